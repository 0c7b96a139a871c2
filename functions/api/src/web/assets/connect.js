// The hosted Connect UI's script (functions/api/src/web/connect_ui/mod.rs), embedded in the
// api binary.
// - In an iframe (the frontend SDK's `openConnectUI`): tells the parent `ready` (to any origin:
//   it says nothing), takes the parent's `session_token`, and tells `connect`, `error` and
//   `close` only to the origin that sent the token.
// - In a tab (`connect_link`): the token comes in the URL's fragment and is taken out of it.
// - Views are HTML fragments fetched from this origin, never another, with the token as a
//   bearer header and no cookie; their data attributes say what happens next.
// - OAuth runs in a popup opened on the user's click; the callback page posts the outcome back.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var framed = window.parent !== window;
  var detectClosed = params.get("detectClosedAuthWindow") === "true";
  var token = null;
  var parentOrigin = null;
  var popup = null;
  var popupView = null;
  var popupTimer = null;
  var view = null;

  var theme = params.get("theme");
  if (theme === "light" || theme === "dark" || theme === "system") {
    document.documentElement.setAttribute("data-theme", theme);
  }
  if (framed) { document.documentElement.classList.add("framed"); }

  function tell(event) {
    if (framed && parentOrigin) { window.parent.postMessage(event, parentOrigin); }
  }

  // A fixed sentence, for when no view can be fetched.
  function say(text) {
    var section = document.createElement("section");
    section.className = "view";
    var p = document.createElement("p");
    p.className = "alert";
    p.setAttribute("role", "alert");
    p.textContent = text;
    section.appendChild(p);
    view.replaceChildren(section);
  }

  function stopWatching() {
    if (popupTimer) { clearInterval(popupTimer); popupTimer = null; }
  }

  function closePopup() {
    stopWatching();
    if (popup && !popup.closed) { popup.close(); }
    popup = null;
  }

  // Without `detectClosedAuthWindow`, a closed popup is not a failure (a provider page with a
  // Cross-Origin-Opener-Policy makes it look closed), and the view offers to start again.
  function watchPopup() {
    stopWatching();
    popupTimer = setInterval(function () {
      if (popup && popup.closed) {
        stopWatching();
        popup = null;
        if (detectClosed) { load(popupView + "?error=window_closed"); }
      }
    }, 500);
  }

  function show(html) {
    view.innerHTML = html;
    var connected = view.querySelector("[data-connected]");
    if (connected) {
      tell({
        type: "connect",
        payload: {
          providerConfigKey: connected.getAttribute("data-integration"),
          connectionId: connected.getAttribute("data-connection-id")
        }
      });
    }
    var failed = view.querySelector("[data-error-code]");
    if (failed) {
      tell({
        type: "error",
        payload: {
          errorType: failed.getAttribute("data-error-code"),
          errorMessage: failed.getAttribute("data-error-message")
        }
      });
    }
    var oauth = view.querySelector("[data-oauth-url]");
    if (oauth && popup && !popup.closed) {
      var url = new URL(oauth.getAttribute("data-oauth-url"), window.location.href);
      url.searchParams.set("connect_session_token", token);
      popup.location.href = url.href;
      watchPopup();
    } else if (!oauth) {
      closePopup();
    }
    var focus = view.querySelector("[autofocus]") || view.querySelector("h2");
    if (focus) { focus.focus(); }
  }

  function load(path, body) {
    var options = {
      method: body ? "POST" : "GET",
      headers: { Authorization: "Bearer " + token },
      credentials: "omit",
      cache: "no-store"
    };
    if (body) { options.body = body; }
    view.setAttribute("aria-busy", "true");
    return fetch("/connect-ui/views/" + path, options)
      .then(function (response) { return response.text(); })
      .then(show, function () {
        say("Lasso could not be reached. Check your internet connection and try again.");
      })
      .then(function () { view.removeAttribute("aria-busy"); });
  }

  function close() {
    closePopup();
    if (framed) {
      window.parent.postMessage({ type: "close" }, parentOrigin || "*");
    } else {
      say("You can close this tab now.");
    }
  }

  function start(sessionToken) {
    token = sessionToken;
    load("start");
  }

  window.addEventListener("message", function (e) {
    var data = e.data;
    if (!data || typeof data !== "object") { return; }
    if (framed && e.source === window.parent && data.type === "session_token") {
      if (typeof data.sessionToken === "string" && data.sessionToken && data.sessionToken !== token) {
        parentOrigin = e.origin;
        start(data.sessionToken);
      }
      return;
    }
    if (popup && e.source === popup && e.origin === window.location.origin) {
      var payload = data.payload || {};
      if (data.type === "nango_oauth_callback_success" && payload.connectionId) {
        // Closed here rather than left to the callback page's own close half a second later:
        // a flow started within that half second would otherwise reuse the closing window.
        closePopup();
        load(popupView + "/connected?connection_id=" + encodeURIComponent(payload.connectionId));
      } else if (data.type === "nango_oauth_callback_error") {
        closePopup();
        load(popupView + "?error=" + encodeURIComponent(payload.errorType || "unknown_error"));
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    view = document.getElementById("connect");

    document.addEventListener("submit", function (e) {
      var form = e.target;
      if (!form.hasAttribute || !form.hasAttribute("data-connect")) { return; }
      e.preventDefault();
      var path = new URL(form.action).pathname.replace(/^\/connect-ui\/views\//, "");
      var body = new URLSearchParams(new FormData(form));
      if (form.getAttribute("data-mode") === "OAUTH2") {
        // Opened now, on the click: browsers block popups opened later.
        closePopup();
        // A name of its own per flow, so no window left from an earlier flow is reused.
        popup = window.open("", "lasso-connect-oauth-" + Date.now(), "popup,width=600,height=720");
        popupView = path;
        if (!popup) {
          load(path + "?error=blocked_by_browser");
          return;
        }
      }
      var button = form.querySelector("[type=submit]");
      if (button) { button.disabled = true; }
      load(path, body);
    });

    document.addEventListener("click", function (e) {
      var el = e.target.closest("[data-view],[data-close],[data-focus-popup]");
      if (!el) {
        // A click beside the dialog, over the app, closes it (not in a tab of its own).
        if (framed && e.target.hasAttribute("data-backdrop")) { close(); }
        return;
      }
      if (el.hasAttribute("data-view")) {
        closePopup();
        load(el.getAttribute("data-view"));
      } else if (el.hasAttribute("data-close")) {
        close();
      } else if (popup && !popup.closed) {
        popup.focus();
      }
    });

    document.addEventListener("keydown", function (e) {
      if (framed && e.key === "Escape") { close(); }
    });

    var fromUrl = new URLSearchParams(window.location.hash.slice(1)).get("session_token") ||
      params.get("session_token");
    if (fromUrl) {
      // Out of the address bar, the history and any later Referer.
      window.history.replaceState(null, "", window.location.pathname);
      start(fromUrl);
    } else if (framed) {
      window.parent.postMessage({ type: "ready" }, "*");
      setTimeout(function () {
        if (!token) { say("The app did not start a connection session. Close this window and try again."); }
      }, 15000);
    } else {
      say("This page opens from an app: start connecting an account there.");
    }
  });
})();

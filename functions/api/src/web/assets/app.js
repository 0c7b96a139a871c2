// Lasso's web pages: a little script, embedded in the api binary.
// - Elements with `data-poll` (milliseconds) and an id are refreshed from the same URL until
//   the server renders them without `data-poll` (API Gateway HTTP APIs cannot stream).
// - Forms with `data-confirm` ask before they submit.
(function () {
  "use strict";
  function poll(el) {
    var every = parseInt(el.getAttribute("data-poll"), 10) || 2000;
    setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Lasso-Poll": "1" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (text) {
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.getElementById(el.id);
          if (!fresh) { return; }
          el.replaceWith(fresh);
          if (fresh.hasAttribute("data-poll")) { poll(fresh); }
        })
        .catch(function () { poll(el); });
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll][id]").forEach(poll);
    document.addEventListener("submit", function (e) {
      var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
      if (msg && !window.confirm(msg)) { e.preventDefault(); }
    });
  });
})();

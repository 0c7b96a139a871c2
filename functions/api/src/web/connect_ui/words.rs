//! What went wrong, in words a person connecting an account understands. The API's codes and
//! messages are for developers: the Connect UI shows a sentence for its user, and keeps the
//! developer's message under "Details" for whoever helps them. The SDK's `error` event gets the
//! code.

use lasso_services::Error;

use super::fields::Field;

/// A failure to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The API's error code (`connection_test_failed`, ...), for the SDK's `error` event.
    pub code: String,
    /// The sentence for the person.
    pub text: String,
    /// The form field it is about, if one.
    pub field: Option<String>,
    /// The developer's message, if there is one worth showing.
    pub detail: Option<String>,
}

/// The sentence for an error code, about the integration called `name`. Only these fixed
/// texts are shown for a code that comes from the browser (the OAuth popup's outcome), so a
/// crafted request cannot put words of its own on the page.
pub fn for_code(code: &str, name: &str) -> String {
    match code {
        "connection_test_failed" => {
            format!("{name} did not accept these credentials. Check them and try again.")
        }
        "authorization_refused" => format!(
            "Access was not granted: you declined, or {name} refused the request. Try again if that was a mistake."
        ),
        "window_closed" => "The sign-in window was closed before it finished. Try again.".into(),
        "blocked_by_browser" => {
            "Your browser blocked the sign-in window. Allow pop-ups for this page and try again."
                .into()
        }
        "invalid_state" | "invalid_callback" => {
            "The sign-in took too long or was already used. Try again.".into()
        }
        "provider_token_error" => format!(
            "{name} did not complete the sign-in. Try again; if it keeps failing, contact the app's team."
        ),
        "provider_unreachable" => format!("{name} could not be reached. Try again in a moment."),
        "missing_client_credentials" | "invalid_provider_config" | "invalid_auth_mode" => {
            format!("{name} is not fully set up for connecting yet. Contact the app's team.")
        }
        "integration_not_allowed" | "unknown_provider_config" => {
            "This integration is not available here. Go back to the app and start again.".into()
        }
        "session_expired" => {
            "This connection session has expired or was closed. Go back to the app and start again."
                .into()
        }
        _ => format!(
            "Something went wrong while connecting {name}. Try again; if it keeps failing, contact the app's team."
        ),
    }
}

/// A flow's error, in words, about the integration called `name` whose form has `fields`.
pub fn failure(error: &Error, name: &str, fields: &[Field]) -> Failure {
    let with = |code: &str, detail: Option<String>| Failure {
        code: code.to_string(),
        text: for_code(code, name),
        field: None,
        detail,
    };
    match error {
        Error::Invalid { field, message } => {
            let known = fields.iter().find(|f| &f.name == field);
            Failure {
                code: "invalid_body".into(),
                text: match known {
                    Some(f) => format!("{} was not accepted: {message}.", f.label),
                    None => format!("{name} could not be connected: {field} {message}."),
                },
                field: known.map(|f| f.name.clone()),
                detail: None,
            }
        }
        Error::BadRequest { code, message }
        | Error::Provider { code, message }
        | Error::Unreachable { code, message }
        | Error::NotFound { code, message } => with(code.as_str(), Some(message.clone())),
        Error::Unauthorized(_) => with("session_expired", None),
        // Our own fault: logged, and nothing of it shown.
        other => {
            tracing::error!(error = %other, "Connect UI flow failed");
            with("internal_error", None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::connect_ui::fields::Input;
    use lasso_services::ErrorCode;

    fn field(name: &str, label: &str) -> Field {
        Field {
            name: name.into(),
            label: label.into(),
            description: None,
            example: None,
            prefix: None,
            suffix: None,
            input: Input::Text,
            required: true,
            default: None,
            schema: None,
        }
    }

    #[test]
    fn errors_become_sentences() {
        let fields = [field("params[subdomain]", "Subdomain")];
        let refused = failure(
            &Error::BadRequest {
                code: ErrorCode::ConnectionTestFailed,
                message: "Keys did not accept the credentials: 401".into(),
            },
            "Keys",
            &fields,
        );
        assert_eq!(
            refused.text,
            "Keys did not accept these credentials. Check them and try again."
        );
        assert_eq!(refused.code, "connection_test_failed");
        assert!(refused.detail.unwrap().contains("401"));

        let host = failure(
            &Error::invalid("params[subdomain]", "is not under an allowed domain"),
            "Keys",
            &fields,
        );
        assert_eq!(host.field.as_deref(), Some("params[subdomain]"));
        assert_eq!(
            host.text,
            "Subdomain was not accepted: is not under an allowed domain."
        );

        let expired = failure(&Error::Unauthorized("expired".into()), "Keys", &fields);
        assert!(expired.text.contains("expired"), "{}", expired.text);

        let ours = failure(&Error::Internal("pool timed out".into()), "Keys", &fields);
        assert!(!ours.text.contains("pool") && ours.detail.is_none());
    }

    #[test]
    fn unknown_codes_get_a_general_sentence() {
        assert!(for_code("<b>made up</b>", "Keys").starts_with("Something went wrong"));
    }
}

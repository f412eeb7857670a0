//! Sending the code: SMTP (`lettre`), an HTTP webhook, or the log (development only).

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;

use crate::config::{Delivery, SmtpSettings, SmtpTls};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(String);

pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    Webhook {
        client: reqwest::Client,
        url: String,
    },
    Log,
}

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl Mailer {
    pub fn new(delivery: &Delivery) -> Result<Mailer, DeliveryError> {
        let err = |e: &dyn std::fmt::Display| DeliveryError(e.to_string());
        Ok(match delivery {
            Delivery::Log => Mailer::Log,
            Delivery::Webhook { url } => Mailer::Webhook {
                client: reqwest::Client::builder()
                    .timeout(WEBHOOK_TIMEOUT)
                    .build()
                    .map_err(|e| err(&e))?,
                url: url.clone(),
            },
            Delivery::Smtp(s) => Mailer::Smtp {
                transport: Box::new(smtp_transport(s).map_err(|e| err(&e))?),
                from: s.from.parse().map_err(|e| err(&e))?,
            },
        })
    }

    pub async fn send(
        &self,
        to: &str,
        code: &str,
        challenge_id: &str,
        ttl: Duration,
    ) -> Result<(), DeliveryError> {
        match self {
            Mailer::Log => {
                tracing::warn!(target: "mfa", "verification code for {}: {code} (mfa.delivery = log)", crate::mfa::mask_email(to));
                Ok(())
            }
            Mailer::Webhook { client, url } => {
                let resp = client
                    .post(url)
                    .json(&json!({ "to": to, "code": code, "challengeId": challenge_id }))
                    .send()
                    .await
                    .map_err(|e| DeliveryError(format!("webhook: {e}")))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(DeliveryError(format!("webhook answered {}", resp.status())))
                }
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = to
                    .parse()
                    .map_err(|e| DeliveryError(format!("recipient: {e}")))?;
                let minutes = ttl.as_secs().div_ceil(60);
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject("Your verification code")
                    .header(ContentType::TEXT_PLAIN)
                    .body(format!(
                        "Your verification code is {code}.\n\nIt expires in {minutes} minutes. If you did not try to sign in, ignore this message.\n"
                    ))
                    .map_err(|e| DeliveryError(format!("message: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| DeliveryError(format!("smtp: {e}")))
            }
        }
    }
}

fn smtp_transport(
    s: &SmtpSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let mut builder = match s.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
    }
    .port(s.port)
    .timeout(Some(s.timeout));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

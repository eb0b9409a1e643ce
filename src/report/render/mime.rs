//! The MIME message around a rendered report: multipart/mixed with the
//! text and HTML alternatives and the CSV attached. Headers go through
//! lettre's builder only; the envelope and sending are the mail queue's.

use super::Rendered;
use super::csv::safe_name;
use crate::mail::automated;
use crate::mail::text::clean;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart};
use std::time::SystemTime;

/// multipart/mixed: [ multipart/alternative [text/plain, text/html],
/// text/csv attachment (`csv_name`) ], To every recipient, with the given
/// Message-ID (kept across retries) and `Auto-Submitted` so auto-responders
/// stay quiet. Headers go through lettre's builder only (RFC 2047 for
/// non-ASCII), after [`clean`].
pub fn email(
    from: &Mailbox,
    to: &[Mailbox],
    rendered: &Rendered,
    message_id: &str,
    date: SystemTime,
) -> Result<lettre::Message, String> {
    if to.is_empty() {
        return Err("a report needs at least one recipient".into());
    }
    let id = clean(message_id).replace(' ', "");
    let id = match id.as_str() {
        "" => None,
        s if s.starts_with('<') => Some(id),
        s => Some(format!("<{s}>")),
    };
    let mut b = automated(from, &clean(&rendered.subject), date).message_id(id);
    for t in to {
        b = b.to(t.clone());
    }
    // Base64 keeps the BOM and the CRLFs byte for byte.
    let body = Body::new_with_encoding(
        rendered.csv.clone().into_bytes(),
        ContentTransferEncoding::Base64,
    )
    .map_err(|_| "CSV attachment cannot be encoded".to_string())?;
    let csv_type =
        ContentType::parse("text/csv; charset=utf-8").map_err(|e| format!("text/csv: {e}"))?;
    let attachment =
        Attachment::new(safe_name(&rendered.csv_name, "report.csv")).body(body, csv_type);
    b.multipart(
        MultiPart::mixed()
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .singlepart(attachment),
    )
    .map_err(|e| e.to_string())
}

//! IDLE (RFC 2177): start, wait for news with a timeout, and DONE.
//!
//! While IDLE runs no other command may be sent; the three calls keep that
//! state on the [`Client`]. Responses that arrive while idling are queued
//! as unsolicited and handed out by [`Client::idle_wait`] and
//! [`Client::idle_done`].

use std::time::Duration;

use slotmail_imap_proto::{CommandBody, Response};

use crate::client::{Client, Step};
use crate::error::{Error, Result};

impl Client {
    /// Sends IDLE and waits for the server's continuation request.
    pub async fn idle_start(&mut self) -> Result<()> {
        self.ready()?;
        if !self.has_capability("IDLE") && !self.has_capability("IMAP4rev2") {
            return Err(Error::MissingCapability("IDLE".into()));
        }
        let (tag, chunks) = self.encode(CommandBody::Idle);
        self.transport.begin("IDLE", self.opts.command_timeout);
        self.take_protocol_error();
        let r = async {
            for chunk in &chunks {
                self.transport.send(chunk).await?;
            }
            self.receive(&tag, &mut Some).await
        }
        .await;
        match r {
            Ok(Step::Continuation(_)) => {
                self.idle_tag = Some(tag);
                self.idle_ended = None;
                Ok(())
            }
            // Refused (NO / BAD) or, oddly, accepted without idling.
            Ok(Step::Tagged(c)) => c.into_result().map(drop),
            Err(e) => {
                self.note(&e);
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for untagged responses during IDLE and returns
    /// them (empty when the time passed quietly). Responses already queued
    /// are returned at once. If the server ends IDLE by itself, this
    /// returns what it has and [`Client::idle_done`] reports the end.
    pub async fn idle_wait(&mut self, timeout: Duration) -> Result<Vec<Response>> {
        let Some(tag) = self.idle_tag.clone() else {
            return Err(Error::InvalidRequest("IDLE is not in progress".into()));
        };
        if self.has_unsolicited() || self.idle_ended.is_some() {
            return Ok(self.take_unsolicited());
        }
        let deadline = crate::transport::deadline_after(timeout);
        let r = async {
            let Some(first) = self.transport.next_until(deadline).await? else {
                return Ok(());
            };
            let mut incoming = Some(first);
            while let Some(item) = incoming {
                match self.absorb(item, &tag, &mut Some)? {
                    None => {}
                    Some(Step::Tagged(c)) => {
                        self.idle_ended = Some(c);
                        break;
                    }
                    Some(Step::Continuation(text)) => {
                        return Err(self.fatal(Error::Protocol(format!(
                            "continuation request during IDLE: + {}",
                            crate::error::escape_bytes(text.as_bytes())
                        ))));
                    }
                }
                incoming = self.transport.next_buffered()?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            self.note(&e);
            return Err(e);
        }
        Ok(self.take_unsolicited())
    }

    /// Sends DONE, reads up to IDLE's tagged response and returns the
    /// untagged responses not yet handed out.
    pub async fn idle_done(&mut self) -> Result<Vec<Response>> {
        let Some(tag) = self.idle_tag.take() else {
            return Err(Error::InvalidRequest("IDLE is not in progress".into()));
        };
        if let Some(c) = self.idle_ended.take() {
            c.into_result()?;
            if let Some(e) = self.take_protocol_error() {
                return Err(e);
            }
            return Ok(self.take_unsolicited());
        }
        self.transport.begin("IDLE DONE", self.opts.command_timeout);
        let r = async {
            self.transport.send(b"DONE\r\n").await?;
            match self.receive(&tag, &mut Some).await? {
                Step::Tagged(c) => c.into_result(),
                Step::Continuation(text) => Err(self.fatal(Error::Protocol(format!(
                    "continuation request after DONE: + {}",
                    crate::error::escape_bytes(text.as_bytes())
                )))),
            }
        }
        .await;
        if let Err(e) = &r {
            self.note(e);
        }
        r?;
        // A response during IDLE that could not be parsed.
        if let Some(e) = self.take_protocol_error() {
            return Err(e);
        }
        Ok(self.take_unsolicited())
    }
}

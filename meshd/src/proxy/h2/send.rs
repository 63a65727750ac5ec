//! Responses on their way to the client: a head as one HEADERS frame (and
//! CONTINUATION when it is large), then DATA as both flow-control windows
//! allow, END_STREAM on the last. Bodies are read in the connection's task
//! only while there is window and room in the write buffer, so a client
//! that stops reading holds the backend back, not meshd's memory.

use super::driver::{Driver, OUT_HIGH};
use super::frame::{self, Reason};
use super::hpack::{encode_content_length, encode_field, encode_status};
use crate::proxy::body::DownBody;
use crate::proxy::buffers;
use crate::proxy::http::{Reply, ReplyFields};
use bytes::Buf;
use http_body::Body;
use hyper::header;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

impl<I: AsyncRead + AsyncWrite + Unpin> Driver<I> {
    /// A request task answered: the head goes out now, the body as it comes.
    pub(super) fn start_response(&mut self, id: u32, reply: Reply) {
        let Some(i) = self.find(id) else {
            // Reset meanwhile: the body settles as it drops.
            return;
        };
        let Reply {
            status,
            fields,
            body,
        } = reply;
        let end = body.is_end_stream();
        let max = self.max_frame_out;
        match fields {
            // Encoded as the backend's head was read: `:status`, then
            // end-to-end fields, lowercased, with meshd's content-length.
            ReplyFields::Hpack(block) => {
                frame::write_headers(self.out(), id, &block, end, max);
                buffers::give_vec(block);
            }
            ReplyFields::Map(fields) => {
                let mut block = std::mem::take(&mut self.block);
                block.clear();
                encode_status(&mut block, status.as_u16());
                // Connection-specific fields (RFC 9113 8.2.2) never get
                // here: meshd's own answers have none.
                for (name, value) in &fields {
                    encode_field(&mut block, name.as_str().as_bytes(), value.as_bytes());
                }
                if let DownBody::Local(b) = &body {
                    if !fields.contains_key(header::CONTENT_LENGTH) {
                        let len = b.as_ref().map_or(0, |b| b.len());
                        encode_content_length(&mut block, len as u64);
                    }
                }
                frame::write_headers(self.out(), id, &block, end, max);
                self.block = block;
            }
        }
        let s = &mut self.streams[i];
        s.task = None;
        if end {
            s.done = true;
        } else {
            s.body = Some(body);
        }
        self.settle(i);
    }

    /// Sends what response bodies have, as far as windows and the write
    /// buffer allow; true when a stream ended.
    pub(super) fn poll_bodies(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ended = false;
        let mut i = 0;
        while i < self.streams.len() {
            if self.backlog() >= OUT_HIGH {
                break;
            }
            match self.pump(i, cx) {
                Some(reason) => {
                    let id = self.streams[i].id;
                    if reason != Reason::NoError {
                        self.reset(id, reason);
                    } else {
                        self.settle(i);
                    }
                    ended = true;
                    // The stream at `i` went (swap_remove): look at `i` again.
                    if self.streams.get(i).is_some_and(|s| s.id == id) {
                        i += 1;
                    }
                }
                None => i += 1,
            }
        }
        ended
    }

    /// Moves stream `i`'s body on; `Some` when the stream is done with
    /// (NoError: its END_STREAM went; else: reset it).
    fn pump(&mut self, i: usize, cx: &mut Context<'_>) -> Option<Reason> {
        loop {
            let max_frame = i64::from(self.max_frame_out);
            let conn_window = self.send_window;
            let s = &mut self.streams[i];
            if s.done || (s.body.is_none() && s.pending.is_empty() && !s.body_done) {
                return None;
            }
            if s.pending.is_empty() && !s.body_done {
                let body = s.body.as_mut()?;
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Ok(data) = f.into_data() {
                            s.pending = data;
                        }
                        s.body_done = body.is_end_stream();
                    }
                    Poll::Ready(None) => s.body_done = true,
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "response body failed");
                        return Some(Reason::Internal);
                    }
                    Poll::Pending => return None,
                }
            }
            let room = s.send_window.min(conn_window).min(max_frame).max(0);
            let n = (s.pending.len() as i64).min(room) as usize;
            if n == 0 && !s.pending.is_empty() {
                // Waiting for WINDOW_UPDATE.
                return None;
            }
            let last = s.body_done && n == s.pending.len();
            if n == 0 && !last {
                continue;
            }
            let id = s.id;
            s.send_window -= n as i64;
            let chunk = s.pending.split_to(n);
            if last {
                s.done = true;
                // Dropped now: the exchange settles (its backend connection
                // goes back to the pool) before the client has read it all.
                s.body = None;
            }
            self.send_window -= n as i64;
            let out = self.out();
            frame::write_data_head(out, id, n as u32, last);
            out.extend_from_slice(chunk.chunk());
            if last {
                return Some(Reason::NoError);
            }
            if self.backlog() >= OUT_HIGH {
                return None;
            }
        }
    }
}

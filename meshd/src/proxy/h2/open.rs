//! A header block, whole: a new stream's request (checked, its backend
//! head written, its task spawned), a request's trailers, or an answer
//! meshd gives without a backend.

use super::driver::{ConnError, Driver, Phase, STREAM_WINDOW};
use super::frame::{self, Reason};
use super::hpack::HpackError;
use super::mailbox::Deliver;
use super::recv;
use super::request::Fields;
use super::streams::Stream;
use super::MAX_CONCURRENT_STREAMS;
use crate::proxy::http::{self, MAX_HEADER_BYTES};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl<I: AsyncRead + AsyncWrite + Unpin> Driver<I> {
    /// A header block, whole: a new request, or a request's trailers.
    pub(super) fn on_block(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), ConnError> {
        if let Some(i) = self.find(id) {
            return self.on_trailers(i, end_stream, block);
        }
        if id.is_multiple_of(2) || id <= self.last_stream {
            return Err(Reason::Protocol);
        }
        self.last_stream = id;
        let mut fields = Fields::new(self.conn.trusted);
        let decoded = self
            .decoder
            .decode(block, MAX_HEADER_BYTES, |n, v| fields.field(n, v));
        match decoded {
            Ok(_) => {}
            Err(HpackError::ListTooLarge) => {
                self.answer_locally(id, 431, end_stream);
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "HPACK block refused");
                return Err(Reason::Compression);
            }
        }
        if self.phase != Phase::Open {
            // Past the GOAWAY's last stream: not processed (RFC 9113 6.8).
            return Ok(());
        }
        // Streams leave the table as soon as they are done both ways.
        if self.streams.len() >= MAX_CONCURRENT_STREAMS as usize {
            frame::write_rst(self.out(), id, Reason::RefusedStream);
            return Ok(());
        }
        let head = match fields.finish() {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(stream = id, error = %e, "malformed HTTP/2 request");
                frame::write_rst(self.out(), id, Reason::Protocol);
                return Ok(());
            }
        };
        if end_stream && head.content_length.is_some_and(|n| n != 0) {
            frame::write_rst(self.out(), id, Reason::Protocol);
            return Ok(());
        }
        self.opened = self.opened.saturating_add(1);
        let mut stream = Stream::new(id, i64::from(STREAM_WINDOW), self.initial_send_window);
        stream.declared = head.content_length;
        let body = (!end_stream).then(|| {
            let (inbound, body) = recv::channel(id, Arc::clone(&self.mailbox));
            stream.inbound = Some(inbound);
            stream.recv_open = true;
            body
        });
        let handled = http::handle(&self.conn, &mut self.rtt, &self.alarms, head, body);
        let deliver = Deliver::new(Arc::clone(&self.mailbox), id);
        stream.task = Some(tokio::spawn(async move {
            deliver.send(handled.await);
        }));
        self.streams.push(stream);
        Ok(())
    }

    pub(super) fn on_trailers(
        &mut self,
        i: usize,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), ConnError> {
        // Decoded to keep HPACK in step; not passed on (the backend's
        // HTTP/1.1 body is sent without trailers).
        let mut pseudo = false;
        match self.decoder.decode(block, MAX_HEADER_BYTES, |n, _| {
            pseudo |= n.starts_with(b":");
            !pseudo
        }) {
            Ok(_) | Err(HpackError::ListTooLarge) => {}
            Err(_) => return Err(Reason::Compression),
        }
        let s = &mut self.streams[i];
        let id = s.id;
        if !s.recv_open {
            self.reset(id, Reason::StreamClosed);
        } else if !end_stream || pseudo {
            self.reset(id, Reason::Protocol);
        } else {
            self.end_request(i);
        }
        Ok(())
    }

    /// Answers a request with a status and no body, without a backend.
    pub(super) fn answer_locally(&mut self, id: u32, status: u16, request_ended: bool) {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        super::hpack::encode_status(&mut block, status);
        super::hpack::encode_field(&mut block, b"content-length", b"0");
        let max = self.max_frame_out;
        frame::write_headers(self.out(), id, &block, true, max);
        self.block = block;
        if !request_ended {
            // The rest of its body is not wanted (RFC 9113 8.1).
            frame::write_rst(self.out(), id, Reason::NoError);
        }
    }
}

//! One HTTP/2 connection's task: frames in, state kept, frames out. Reads
//! go through the thread's buffer cache and every complete frame in a read
//! is handled before anything is written, so the answers to one read go
//! out in one write. A connection error sends GOAWAY and closes; a stream
//! error resets that stream only.

use super::frame::{self, Frame, FrameError, Head, Reason, Setting};
use super::hpack::{Decoder, HpackError};
use super::mailbox::{Deliver, Delivered, Mailbox};
use super::recv;
use super::request::Fields;
use super::streams::{Stream, Table};
use super::MAX_CONCURRENT_STREAMS;
use crate::proxy::alarms::Alarms;
use crate::proxy::buffers;
use crate::proxy::codec::poll_fill_held;
use crate::proxy::http::{self, Conn, MAX_HEADER_BYTES};
use crate::proxy::rtt::RttCache;
use bytes::BytesMut;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Largest frame payload accepted (the default SETTINGS_MAX_FRAME_SIZE,
/// which meshd does not raise).
const MAX_FRAME_IN: u32 = 16_384;
/// Window meshd gives each stream's request body.
pub(super) const STREAM_WINDOW: u32 = 256 * 1024;
/// Window meshd gives the connection's request bodies together.
const CONN_WINDOW: u32 = 1024 * 1024;
/// Credits are announced once this many bytes add up (or a stream ends).
const CREDIT_AT: u32 = 16 * 1024;
/// HPACK dynamic table size meshd decodes with (the protocol's default).
const TABLE_SIZE: usize = 4096;
/// A header block (HEADERS and CONTINUATION) larger than this ends the
/// connection: its fields are over the list limit anyway, and a block
/// that never ends must not grow without bound.
const MAX_BLOCK: usize = 2 * MAX_HEADER_BYTES;
/// Reading stops while this much is waiting to be written: a client that
/// does not read cannot make meshd buffer its answers (PING or SETTINGS
/// floods included).
pub(super) const OUT_HIGH: usize = 64 * 1024;
/// Reads per poll before other work gets a turn.
const READS_PER_POLL: usize = 16;
/// Resets of unanswered streams tolerated before a client is taken for a
/// rapid-reset attacker (CVE-2023-44487)...
const RESETS_FREE: u32 = 100;

/// A header block still waiting for its CONTINUATION frames.
struct Continued {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// How the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking new streams.
    Open,
    /// GOAWAY sent or received: streams in flight finish, then it closes.
    Closing,
    /// A connection error: GOAWAY goes out, then it closes.
    Dying,
    /// The client closed, or the socket failed.
    Gone,
}

/// One connection's state.
pub struct Driver<I> {
    pub(super) io: I,
    pub(super) conn: Arc<Conn>,
    read: BytesMut,
    /// Frames to write; `written` of them are written.
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// A write was made and not yet flushed (TLS).
    pub(super) unflushed: bool,
    /// Reusable room for one header block being encoded.
    pub(super) block: Vec<u8>,
    decoder: Decoder,
    pub(super) streams: Table,
    mailbox: Arc<Mailbox>,
    delivered: Delivered,
    alarms: Arc<Alarms>,
    rtt: RttCache,
    preface: bool,
    settings_seen: bool,
    continued: Option<Continued>,
    /// Highest stream id the client opened.
    last_stream: u32,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    pub(super) max_frame_out: u32,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE.
    initial_send_window: i64,
    /// What meshd may still send on the connection.
    pub(super) send_window: i64,
    /// What the client may still send on the connection.
    recv_window: i64,
    /// Bytes taken on the connection, not yet given back.
    recv_credit: u32,
    phase: Phase,
    /// Bytes came since the idle check last looked.
    seen: bool,
    opened: u32,
    resets: u32,
}

/// The connection error that ends it.
type ConnError = Reason;

impl<I: AsyncRead + AsyncWrite + Unpin> Driver<I> {
    /// A connection; `read` holds what was already read from it.
    pub fn new(io: I, conn: Arc<Conn>, read: BytesMut, alarms: Arc<Alarms>) -> Driver<I> {
        let mut d = Driver {
            io,
            conn,
            read,
            out: Vec::new(),
            written: 0,
            unflushed: false,
            block: Vec::new(),
            decoder: Decoder::new(TABLE_SIZE),
            streams: Table::default(),
            mailbox: Arc::new(Mailbox::default()),
            delivered: Delivered::default(),
            alarms,
            rtt: RttCache::default(),
            preface: false,
            settings_seen: false,
            continued: None,
            last_stream: 0,
            max_frame_out: MAX_FRAME_IN,
            initial_send_window: 65_535,
            send_window: 65_535,
            recv_window: i64::from(CONN_WINDOW),
            recv_credit: 0,
            phase: Phase::Open,
            seen: true,
            opened: 0,
            resets: 0,
        };
        // The server's preface goes first (RFC 9113 3.4).
        let out = d.out();
        frame::write_settings(
            out,
            &[
                Setting::MaxConcurrentStreams(MAX_CONCURRENT_STREAMS),
                Setting::InitialWindowSize(STREAM_WINDOW),
                Setting::MaxHeaderListSize(MAX_HEADER_BYTES as u32),
            ],
        );
        frame::write_window_update(out, 0, CONN_WINDOW - 65_535);
        d
    }

    /// The write buffer, taken from the thread's cache when it has none.
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = buffers::take_vec(buffers::READ);
        }
        &mut self.out
    }

    /// Bytes waiting to be written.
    pub(super) fn backlog(&self) -> usize {
        self.out.len() - self.written
    }

    /// Whether it is on its way out (no new streams).
    pub fn closing(&self) -> bool {
        self.phase != Phase::Open
    }

    /// Lets go of what a burst of streams grew, when none is open (kept
    /// between requests, where growing it again would cost every burst);
    /// true when it did.
    pub fn let_go(&mut self) -> bool {
        if !self.streams.is_empty() {
            return false;
        }
        self.streams.shrink_when_empty();
        self.block = Vec::new();
        self.delivered = Delivered::default();
        true
    }

    /// Whether bytes came since the last call.
    pub fn take_seen(&mut self) -> bool {
        std::mem::replace(&mut self.seen, false)
    }

    /// Sends GOAWAY: streams in flight finish, no new ones are taken.
    pub fn go_away(&mut self) {
        if self.phase == Phase::Open {
            let last = self.last_stream;
            frame::write_goaway(self.out(), last, Reason::NoError);
            self.phase = Phase::Closing;
        }
    }

    fn die(&mut self, reason: Reason) {
        tracing::debug!(?reason, "HTTP/2 connection error");
        if self.phase != Phase::Gone {
            let last = self.last_stream;
            frame::write_goaway(self.out(), last, reason);
            self.phase = Phase::Dying;
        }
        for s in self.streams.iter_mut() {
            s.cancel();
        }
        self.streams.clear();
    }

    /// Writes what is left and shuts the write side, so that a GOAWAY
    /// reaches a client whose unread bytes would otherwise turn the close
    /// into a reset.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(crate::timeouts::REQUEST_HEADER, async {
            if self.written < self.out.len() {
                self.io.write_all(&self.out[self.written..]).await?;
            }
            self.io.shutdown().await
        })
        .await;
        self.release();
    }

    fn release(&mut self) {
        if self.out.capacity() != 0 && self.backlog() == 0 {
            buffers::give_vec(std::mem::take(&mut self.out));
            self.written = 0;
        }
        if self.read.is_empty() && self.read.capacity() != 0 {
            buffers::give_read(std::mem::take(&mut self.read));
        }
    }

    /// Drives the connection; ready when it is over.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut again = false;
            if matches!(self.phase, Phase::Open | Phase::Closing) {
                again |= self.poll_read(cx);
            }
            again |= self.poll_mailbox(cx);
            again |= self.poll_bodies(cx);
            let before = self.backlog();
            if self.poll_write(cx).is_err() {
                self.phase = Phase::Gone;
                self.die(Reason::NoError);
                return Poll::Ready(());
            }
            // Room to write again: reading (stopped above `OUT_HIGH`) resumes.
            again |= before >= OUT_HIGH && self.backlog() < OUT_HIGH;
            let over = match self.phase {
                Phase::Open => false,
                Phase::Closing => self.streams.is_empty(),
                Phase::Dying | Phase::Gone => true,
            };
            if over && self.backlog() == 0 {
                return Poll::Ready(());
            }
            if self.streams.is_empty() && self.backlog() == 0 {
                // Quiet: the buffers go back to the thread's cache.
                self.release();
            }
            if !again {
                return Poll::Pending;
            }
        }
    }

    /// Reads and handles frames; true when it should be called again.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..READS_PER_POLL {
            if let Err(reason) = self.handle_buffered() {
                self.die(reason);
                return true;
            }
            if self.phase == Phase::Dying || self.backlog() >= OUT_HIGH {
                return false;
            }
            match poll_fill_held(&mut self.read, &mut self.io, cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.phase = Phase::Gone;
                    self.streams.iter_mut().for_each(Stream::cancel);
                    return true;
                }
                Poll::Ready(Ok(_)) => self.seen = true,
                Poll::Pending => {
                    if self.read.is_empty() {
                        buffers::give_read(std::mem::take(&mut self.read));
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Handles every complete frame in the read buffer.
    fn handle_buffered(&mut self) -> Result<(), ConnError> {
        let mut buf = std::mem::take(&mut self.read);
        let r = self.handle_frames(&mut buf);
        self.read = buf;
        r
    }

    fn handle_frames(&mut self, buf: &mut BytesMut) -> Result<(), ConnError> {
        if !self.preface {
            let n = buf.len().min(frame::PREFACE.len());
            if buf.get(..n) != frame::PREFACE.get(..n) {
                return Err(Reason::Protocol);
            }
            if n < frame::PREFACE.len() {
                return Ok(());
            }
            buffers::consume(buf, n);
            self.preface = true;
        }
        while self.phase != Phase::Dying {
            let Some(head) = buf.get(..frame::HEAD_LEN) else {
                break;
            };
            let head = frame::parse_head(head.try_into().map_err(|_| Reason::Internal)?);
            if head.len > MAX_FRAME_IN {
                return Err(Reason::FrameSize);
            }
            let total = frame::HEAD_LEN + head.len as usize;
            let Some(payload) = buf.get(frame::HEAD_LEN..total) else {
                buf.reserve(total - buf.len());
                break;
            };
            self.on_frame(head, payload)?;
            buffers::consume(buf, total);
        }
        Ok(())
    }

    fn on_frame(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        use frame::kind::{CONTINUATION, HEADERS, SETTINGS};
        if !self.settings_seen && head.kind != SETTINGS {
            return Err(Reason::Protocol);
        }
        if let Some(c) = &self.continued {
            if head.kind != CONTINUATION || head.stream != c.stream {
                return Err(Reason::Protocol);
            }
        }
        let parsed = match frame::parse(head, payload) {
            Ok(f) => f,
            Err(FrameError::Connection(r)) => return Err(r),
            // A HEADERS frame that depends on itself: its block is still
            // decoded, to keep HPACK in step, before the stream is reset.
            Err(FrameError::Stream(id, r)) if head.kind == HEADERS => {
                if head.flags & frame::flags::END_HEADERS == 0 || id <= self.last_stream {
                    return Err(Reason::Protocol);
                }
                let block = frame::headers_fragment(head, payload).map_err(|_| Reason::Protocol)?;
                self.last_stream = id;
                match self.decoder.decode(block, MAX_HEADER_BYTES, |_, _| false) {
                    Ok(_) | Err(HpackError::ListTooLarge) => {}
                    Err(_) => return Err(Reason::Compression),
                }
                self.reset(id, r);
                return Ok(());
            }
            Err(FrameError::Stream(id, r)) => {
                self.reset(id, r);
                return Ok(());
            }
        };
        match parsed {
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { ack: false, params } => self.on_settings(params),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                if end_headers {
                    self.on_block(stream, end_stream, fragment)
                } else {
                    self.continued = Some(Continued {
                        stream,
                        end_stream,
                        block: fragment.to_vec(),
                    });
                    Ok(())
                }
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                let Some(mut c) = self.continued.take() else {
                    return Err(Reason::Protocol);
                };
                if c.block.len() + fragment.len() > MAX_BLOCK {
                    return Err(Reason::EnhanceYourCalm);
                }
                c.block.extend_from_slice(fragment);
                if end_headers {
                    self.on_block(c.stream, c.end_stream, &c.block)
                } else {
                    self.continued = Some(c);
                    Ok(())
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len),
            Frame::RstStream { stream, .. } => self.on_reset(stream),
            Frame::Ping {
                ack: false,
                payload,
            } => {
                frame::write_ping_ack(self.out(), payload);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment),
            Frame::GoAway { .. } => {
                // No new streams will come; those in flight finish.
                if self.phase == Phase::Open {
                    self.phase = Phase::Closing;
                }
                Ok(())
            }
            Frame::PushPromise { .. } => Err(Reason::Protocol),
            Frame::Ping { ack: true, .. } | Frame::Priority { .. } | Frame::Unknown => Ok(()),
        }
    }

    fn on_settings(&mut self, params: &[u8]) -> Result<(), ConnError> {
        for s in frame::settings(params) {
            match s {
                Setting::InitialWindowSize(v) => {
                    let delta = i64::from(v) - self.initial_send_window;
                    self.initial_send_window = i64::from(v);
                    for st in self.streams.iter_mut() {
                        st.send_window += delta;
                        if st.send_window > i64::from(i32::MAX) {
                            return Err(Reason::FlowControl);
                        }
                    }
                }
                Setting::MaxFrameSize(v) => self.max_frame_out = v,
                // The encoder keeps no dynamic table: a table size is no concern.
                _ => {}
            }
        }
        self.settings_seen = true;
        frame::write_settings_ack(self.out());
        Ok(())
    }

    pub(super) fn find(&self, id: u32) -> Option<usize> {
        self.streams.find(id)
    }

    /// Resets one stream (RST_STREAM) and ends it.
    pub(super) fn reset(&mut self, id: u32, reason: Reason) {
        frame::write_rst(self.out(), id, reason);
        if let Some(i) = self.find(id) {
            self.streams[i].cancel();
            self.streams.swap_remove(i);
        }
    }

    /// A header block, whole: a new request, or a request's trailers.
    fn on_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), ConnError> {
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

    fn on_trailers(&mut self, i: usize, end_stream: bool, block: &[u8]) -> Result<(), ConnError> {
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

    /// The client ended a request body: its length must add up.
    fn end_request(&mut self, i: usize) {
        let s = &mut self.streams[i];
        s.recv_open = false;
        let inbound = s.inbound.take();
        if s.declared.is_some_and(|n| n != s.received) {
            let id = s.id;
            self.reset(id, Reason::Protocol);
        } else if let Some(inbound) = inbound {
            inbound.end();
        }
        self.settle(i);
    }

    fn on_data(
        &mut self,
        id: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
    ) -> Result<(), ConnError> {
        let flow = i64::from(flow_len);
        if flow > self.recv_window {
            return Err(Reason::FlowControl);
        }
        self.recv_window -= flow;
        let Some(i) = self.find(id) else {
            if id > self.last_stream {
                return Err(Reason::Protocol);
            }
            // A closed stream: its bytes still count on the connection.
            self.recv_credit += flow_len;
            frame::write_rst(self.out(), id, Reason::StreamClosed);
            return Ok(());
        };
        let s = &mut self.streams[i];
        if !s.recv_open {
            self.recv_credit += flow_len;
            self.reset(id, Reason::StreamClosed);
            return Ok(());
        }
        if flow > s.recv_window {
            self.recv_credit += flow_len;
            self.reset(id, Reason::FlowControl);
            return Ok(());
        }
        s.recv_window -= flow;
        s.received += data.len() as u64;
        if s.declared.is_some_and(|n| s.received > n) {
            self.recv_credit += flow_len;
            self.reset(id, Reason::Protocol);
            return Ok(());
        }
        // Padding is given back at once; the data as the backend takes it.
        let mut credit = flow_len - data.len() as u32;
        let passed = data.is_empty() || s.inbound.as_ref().is_some_and(|b| b.push(data));
        if !passed {
            credit = flow_len;
        }
        s.recv_credit += credit;
        self.recv_credit += credit;
        if end_stream {
            self.end_request(i);
        }
        Ok(())
    }

    fn on_reset(&mut self, id: u32) -> Result<(), ConnError> {
        if id > self.last_stream {
            return Err(Reason::Protocol);
        }
        if let Some(i) = self.find(id) {
            let s = &mut self.streams[i];
            if s.task.is_some() {
                // Reset before its answer: the work meshd started is wasted.
                self.resets += 1;
                if self.resets > RESETS_FREE && self.resets > self.opened / 2 {
                    return Err(Reason::EnhanceYourCalm);
                }
            }
            s.cancel();
            self.streams.swap_remove(i);
        }
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnError> {
        let max = i64::from(i32::MAX);
        if id == 0 {
            self.send_window += i64::from(increment);
            if self.send_window > max {
                return Err(Reason::FlowControl);
            }
            return Ok(());
        }
        match self.find(id) {
            Some(i) => {
                let s = &mut self.streams[i];
                s.send_window += i64::from(increment);
                if s.send_window > max {
                    self.reset(id, Reason::FlowControl);
                }
            }
            None if id > self.last_stream => return Err(Reason::Protocol),
            None => {}
        }
        Ok(())
    }

    /// Answers a request with a status and no body, without a backend.
    fn answer_locally(&mut self, id: u32, status: u16, request_ended: bool) {
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

    /// Removes stream `i` when it is done both ways.
    pub(super) fn settle(&mut self, i: usize) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        if !s.done || s.task.is_some() {
            return;
        }
        if s.recv_open {
            // Answered before its body ended: the rest is not wanted.
            let id = s.id;
            s.cancel();
            frame::write_rst(self.out(), id, Reason::NoError);
        }
        self.streams.swap_remove(i);
    }

    /// Takes what the request tasks delivered: answers start, taken body
    /// bytes go back to the client as WINDOW_UPDATE. True when an answer came.
    fn poll_mailbox(&mut self, cx: &mut Context<'_>) -> bool {
        let mut d = std::mem::take(&mut self.delivered);
        self.mailbox.take(cx, &mut d);
        let answered = !d.replies.is_empty();
        for (id, reply) in d.replies.drain(..) {
            match reply {
                Some(reply) => self.start_response(id, reply),
                // Its task ended without an answer: a bug, or it was
                // aborted because its stream went.
                None => {
                    if let Some(i) = self.find(id) {
                        if self.streams[i].task.is_some() {
                            self.reset(id, Reason::Internal);
                        }
                    }
                }
            }
        }
        for (id, n) in d.credits.drain(..) {
            self.recv_credit += n;
            if let Some(i) = self.find(id) {
                self.streams[i].recv_credit += n;
            }
        }
        self.delivered = d;
        self.announce_credits();
        answered
    }

    /// Gives back what the request tasks took, as WINDOW_UPDATE frames.
    fn announce_credits(&mut self) {
        if self.recv_credit >= CREDIT_AT {
            let n = std::mem::take(&mut self.recv_credit);
            self.recv_window += i64::from(n);
            frame::write_window_update(self.out(), 0, n);
        }
        for i in 0..self.streams.len() {
            let s = &mut self.streams[i];
            if s.recv_open && s.recv_credit >= CREDIT_AT {
                let (id, n) = (s.id, std::mem::take(&mut s.recv_credit));
                s.recv_window += i64::from(n);
                frame::write_window_update(self.out(), id, n);
            }
        }
    }

    /// Writes what is waiting; `Err` when the socket failed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), ()> {
        while self.written < self.out.len() {
            let rest = self.out.get(self.written..).unwrap_or_default();
            match Pin::new(&mut self.io).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Poll::Pending => return Ok(()),
            }
        }
        self.out.clear();
        self.written = 0;
        if self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => {}
            }
        }
        Ok(())
    }
}

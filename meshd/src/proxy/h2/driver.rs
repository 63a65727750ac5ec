//! One HTTP/2 connection's task: frames in, state kept, frames out. Reads
//! go through the thread's buffer cache and every complete frame in a read
//! is handled before anything is written, so the answers to one read go
//! out in one write. A connection error sends GOAWAY and closes; a stream
//! error resets that stream only.

use super::frame::{self, Frame, FrameError, Head, Reason, Setting};
use super::hpack::{Decoder, HpackError};
use super::mailbox::{Delivered, Mailbox};
use super::streams::{Stream, Table};
use super::MAX_CONCURRENT_STREAMS;
use crate::proxy::alarms::Alarms;
use crate::proxy::buffers;
use crate::proxy::codec::poll_fill_held;
use crate::proxy::http::{Conn, MAX_HEADER_BYTES};
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
pub(super) const CONN_WINDOW: u32 = 1024 * 1024;
/// Credits are announced once this many bytes add up (or a stream ends).
pub(super) const CREDIT_AT: u32 = 16 * 1024;
/// HPACK dynamic table size meshd decodes with (the protocol's default).
pub(super) const TABLE_SIZE: usize = 4096;
/// A header block (HEADERS and CONTINUATION) larger than this ends the
/// connection: its fields are over the list limit anyway, and a block
/// that never ends must not grow without bound.
pub(super) const MAX_BLOCK: usize = 2 * MAX_HEADER_BYTES;
/// Reading stops while this much is waiting to be written: a client that
/// does not read cannot make meshd buffer its answers (PING or SETTINGS
/// floods included).
pub(super) const OUT_HIGH: usize = 64 * 1024;
/// Reads per poll before other work gets a turn.
const READS_PER_POLL: usize = 16;
/// Resets of unanswered streams tolerated before a client is taken for a
/// rapid-reset attacker (CVE-2023-44487)...
pub(super) const RESETS_FREE: u32 = 100;

/// A header block still waiting for its CONTINUATION frames.
pub(super) struct Continued {
    pub(super) stream: u32,
    pub(super) end_stream: bool,
    pub(super) block: Vec<u8>,
}

/// How the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
    pub(super) read: BytesMut,
    /// Frames to write; `written` of them are written.
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// A write was made and not yet flushed (TLS).
    pub(super) unflushed: bool,
    /// Reusable room for one header block being encoded.
    pub(super) block: Vec<u8>,
    pub(super) decoder: Decoder,
    pub(super) streams: Table,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) delivered: Delivered,
    pub(super) alarms: Arc<Alarms>,
    pub(super) rtt: RttCache,
    pub(super) preface: bool,
    pub(super) settings_seen: bool,
    pub(super) continued: Option<Continued>,
    /// Highest stream id the client opened.
    pub(super) last_stream: u32,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    pub(super) max_frame_out: u32,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE.
    pub(super) initial_send_window: i64,
    /// What meshd may still send on the connection.
    pub(super) send_window: i64,
    /// What the client may still send on the connection.
    pub(super) recv_window: i64,
    /// Bytes taken on the connection, not yet given back.
    pub(super) recv_credit: u32,
    pub(super) phase: Phase,
    /// Bytes came since the idle check last looked.
    pub(super) seen: bool,
    pub(super) opened: u32,
    pub(super) resets: u32,
}

/// The connection error that ends it.
pub(super) type ConnError = Reason;

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

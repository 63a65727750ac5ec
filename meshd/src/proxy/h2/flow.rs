//! Flow control both ways and what request tasks hand back: DATA is
//! counted against the connection's and the stream's receive windows and
//! passed to the request's body; bytes the backend took come back through
//! the mailbox and go out as WINDOW_UPDATE; the client's WINDOW_UPDATEs
//! open the send windows `send` writes within.

use super::driver::{ConnError, Driver, CREDIT_AT};
use super::frame::{self, Reason};
use std::task::Context;
use tokio::io::{AsyncRead, AsyncWrite};

impl<I: AsyncRead + AsyncWrite + Unpin> Driver<I> {
    /// The client ended a request body: its length must add up.
    pub(super) fn end_request(&mut self, i: usize) {
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

    pub(super) fn on_data(
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

    pub(super) fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnError> {
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

    /// Takes what the request tasks delivered: answers start, taken body
    /// bytes go back to the client as WINDOW_UPDATE. True when an answer came.
    pub(super) fn poll_mailbox(&mut self, cx: &mut Context<'_>) -> bool {
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
    pub(super) fn announce_credits(&mut self) {
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
}

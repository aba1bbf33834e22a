//! The guard's sink on a connection served by the codec ([`Inbox`]): what the guard
//! validated, as heads, decoded body bytes and body ends, in stream order. The
//! connection reads only when the inbox is empty and someone waits for input (the
//! next head, or the body being polled), so it holds at most one read's worth.

use super::head::RequestHead;
use crate::guard::{Sink, ValidHead};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// One item of validated input.
#[derive(Debug)]
pub(crate) enum Input {
    Head(RequestHead),
    /// Body bytes (de-chunked).
    Data(Bytes),
    /// The body of the last head ended.
    End,
}

#[derive(Debug, Default)]
pub(crate) struct Inbox {
    items: VecDeque<Input>,
    /// Body bytes after the last item, not yet an item (so one read's body bytes
    /// become one `Data`, however many chunks they were).
    data: BytesMut,
    /// The connection turned out to be HTTP/2 (prior knowledge): its bytes so far.
    h2: Option<BytesMut>,
}

impl Inbox {
    /// The next input, in stream order.
    pub(crate) fn pop(&mut self) -> Option<Input> {
        match self.items.pop_front() {
            Some(item) => Some(item),
            None if !self.data.is_empty() => Some(Input::Data(self.data.split().freeze())),
            None => None,
        }
    }

    /// Puts back an input taken too early (it stays first).
    pub(crate) fn unpop(&mut self, input: Input) {
        self.items.push_front(input);
    }

    /// How many items wait (heads, body pieces, body ends).
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The next input is the end of a body.
    pub(crate) fn next_is_end(&self) -> bool {
        matches!(self.items.front(), Some(Input::End))
    }

    /// Bytes held (body data and heads), for the bound on what a connection reads
    /// ahead while an answer is owed.
    pub(crate) fn held_bytes(&self) -> usize {
        let items: usize = self
            .items
            .iter()
            .map(|i| match i {
                Input::Head(h) => h.bytes().len(),
                Input::Data(d) => d.len(),
                Input::End => 0,
            })
            .sum();
        items + self.data.len()
    }

    /// The bytes of an HTTP/2 connection (from its preface on), if it is one.
    pub(crate) fn take_h2(&mut self) -> Option<BytesMut> {
        self.h2.take()
    }

    pub(crate) fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    fn flush_data(&mut self) {
        if !self.data.is_empty() {
            let data = self.data.split().freeze();
            self.items.push_back(Input::Data(data));
        }
    }
}

impl Sink for Inbox {
    fn head(&mut self, head: ValidHead<'_>) {
        self.flush_data();
        self.items.push_back(Input::Head(RequestHead::take(head)));
    }

    fn body(&mut self, data: &[u8]) {
        self.data.extend_from_slice(data);
    }

    fn framing(&mut self, _raw: &[u8]) {}

    fn body_end(&mut self) {
        self.flush_data();
        self.items.push_back(Input::End);
    }

    fn h2(&mut self, raw: &[u8]) {
        // The codec serves HTTP/1 only: the connection goes to hyper's HTTP/2 server
        // with these bytes.
        self.h2
            .get_or_insert_with(BytesMut::new)
            .extend_from_slice(raw);
    }
}

//! A sequential writer over a caller buffer already checked to be large enough.
//!
//! What it does: copies bytes in order and counts them. What it does not: check
//! capacity up front; builders compute the exact length first, so a short slice here
//! is a bug that shows up as a short count, never as a panic.

/// Appends into a fixed slice.
pub(crate) struct SliceWriter<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl<'o> SliceWriter<'o> {
    pub(crate) fn new(out: &'o mut [u8]) -> Self {
        Self { out, pos: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
            self.pos = end;
        }
    }

    pub(crate) fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.put(&[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SliceWriter;

    #[test]
    fn writes_in_order_and_refuses_to_overflow() {
        let mut buf = [9u8; 5];
        let mut w = SliceWriter::new(&mut buf);
        w.put(&[1, 2]);
        w.zeros(2);
        w.put(&[3, 4]); // does not fit: nothing written
        assert_eq!(w.pos(), 4);
        assert_eq!(buf, [1, 2, 0, 0, 9]);
    }
}

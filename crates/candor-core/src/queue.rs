//! A bounded queue whose memory grows with what is in it. std's bounded channel allocates
//! every slot up front — the store's 16 384 rows alone were 1.3 MB touched at start, idle or
//! not — so this is std's unbounded channel (blocks of slots, made as needed) with the bound
//! kept by a counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvError, TryRecvError, TrySendError};
use std::sync::Arc;

/// A queue of at most `cap` items.
pub fn bounded<T>(cap: usize) -> (BoundedSender<T>, BoundedReceiver<T>) {
    let (tx, rx) = mpsc::channel();
    let len = Arc::new(AtomicUsize::new(0));
    (
        BoundedSender {
            tx,
            len: len.clone(),
            cap,
        },
        BoundedReceiver { rx, len },
    )
}

pub struct BoundedSender<T> {
    tx: mpsc::Sender<T>,
    len: Arc<AtomicUsize>,
    cap: usize,
}

impl<T> Clone for BoundedSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            len: self.len.clone(),
            cap: self.cap,
        }
    }
}

impl<T> BoundedSender<T> {
    /// Never blocks: `Full` when `cap` items wait.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(item));
        }
        self.tx.send(item).map_err(|e| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(e.0)
        })
    }

    /// Past the bound: for a marker that must get in (a flush barrier), counted like the rest.
    pub fn send_anyway(&self, item: T) -> Result<(), T> {
        self.len.fetch_add(1, Ordering::AcqRel);
        self.tx.send(item).map_err(|e| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }
}

pub struct BoundedReceiver<T> {
    rx: mpsc::Receiver<T>,
    len: Arc<AtomicUsize>,
}

impl<T> BoundedReceiver<T> {
    pub fn recv(&self) -> Result<T, RecvError> {
        let item = self.rx.recv()?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Ok(item)
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let item = self.rx.try_recv()?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_holds_cap_items_then_refuses_and_takes_again_once_one_is_out() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.clone().try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv(), Ok(1));
        tx.try_send(3).unwrap();
        tx.send_anyway(4).unwrap();
        assert_eq!(
            [rx.try_recv(), rx.try_recv(), rx.try_recv()],
            [Ok(2), Ok(3), Ok(4)]
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx);
        assert!(matches!(tx.try_send(5), Err(TrySendError::Disconnected(5))));
    }
}

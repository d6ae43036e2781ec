//! Completion processing: reading the completion queue and recording what completed. Never
//! runs a handler: arrived records go to their sender's inbox, finished sends free their
//! buffers, finished RMA operations mark their slot.

use std::sync::atomic::Ordering;

use atoll_ofi_sys as sys;

use super::{fabric, lock, Arrived, OfiProvider, Via, OP_DONE, OP_FAILED, OP_PENDING};
use crate::{Error, Place};

/// Completions read per `fi_cq_read` call.
const BATCH: usize = 32;

/// What an operation context belongs to.
enum Owner {
    Recv(u32),
    Send(u32),
    Rma(usize),
}

impl OfiProvider {
    fn owner(&self, context: *mut std::ffi::c_void) -> Option<Owner> {
        let id = self.context_id(context)?;
        Some(if id < self.recv_count {
            Owner::Recv(id as u32)
        } else if id < self.recv_count + self.send_count {
            Owner::Send((id - self.recv_count) as u32)
        } else {
            Owner::Rma(id - self.recv_count - self.send_count)
        })
    }

    /// Reads the completion queues until they are empty (or another thread is reading
    /// them). Returns how many completions were processed.
    pub(super) fn poll_completions(&self) -> usize {
        let Ok(_reading) = self.cq.try_lock() else {
            return 0;
        };
        let mut entries = [sys::fi_cq_data_entry::default(); BATCH];
        let mut sources = [0 as sys::fi_addr_t; BATCH];
        let mut total = 0;
        for (via, endpoint) in self.routes.endpoints() {
            loop {
                let rc = endpoint.read_completions(&mut entries, &mut sources);
                if rc == -(sys::FI_EAVAIL as isize) {
                    if let Some((context, error)) = endpoint.read_error() {
                        self.failed(context, error);
                        total += 1;
                        continue;
                    }
                    break;
                }
                if rc < 0 {
                    self.report(fabric::error((-rc) as i32, "fi_cq_read"));
                    break;
                }
                if rc == 0 {
                    break;
                }
                let count = rc as usize;
                for (entry, source) in entries[..count].iter().zip(&sources[..count]) {
                    self.completed(entry, via, *source);
                }
                total += count;
                if count < BATCH {
                    break;
                }
            }
        }
        if total > 0 {
            self.completions.fetch_add(total as u64, Ordering::Release);
        }
        total
    }

    fn completed(&self, entry: &sys::fi_cq_data_entry, via: Via, source: sys::fi_addr_t) {
        match self.owner(entry.op_context) {
            Some(Owner::Recv(buffer)) => {
                // With FI_SOURCE the transport names the sender; without it the record's own
                // claim decides (checked against the job's size at delivery).
                let from = if source == u64::MAX {
                    self.claimed_sender(buffer, entry.len)
                } else {
                    self.routes.place_at(via, source).unwrap_or(usize::MAX)
                };
                if from >= self.places {
                    self.report(Error::PlaceOutOfRange {
                        ring: Place::new(self.here),
                        claimed: from as u64,
                        places: self.places,
                    });
                    if let Err(error) = self.post_recv(buffer) {
                        self.report(error);
                    }
                    return;
                }
                let inbox = &self.inboxes[from];
                inbox.queue.lock().push_back(Arrived {
                    buffer,
                    len: entry.len,
                });
                inbox.waiting.fetch_add(1, Ordering::Release);
            }
            Some(Owner::Send(slot)) => self.send_done(slot),
            Some(Owner::Rma(op)) => {
                self.op_state[op].store(OP_DONE, Ordering::Release);
            }
            None => self.report(Error::Ofi {
                what: "a completion".into(),
                code: 0,
                text: "it names no operation of this place".into(),
            }),
        }
    }

    fn failed(&self, context: *mut std::ffi::c_void, error: Error) {
        match self.owner(context) {
            Some(Owner::Recv(buffer)) => {
                self.report(error);
                if let Err(error) = self.post_recv(buffer) {
                    self.report(error);
                }
            }
            Some(Owner::Send(slot)) => {
                let to = self.send_dest[slot as usize].load(Ordering::Relaxed);
                tracing::debug!(%error, to, "a send failed");
                self.report(error);
                self.send_done(slot);
            }
            Some(Owner::Rma(op)) => {
                let code = match &error {
                    Error::Ofi { code, .. } => *code,
                    _ => 0,
                };
                self.op_error[op].store(code, Ordering::Relaxed);
                if self.op_state[op]
                    .compare_exchange(OP_PENDING, OP_FAILED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    self.report(error);
                }
            }
            None => self.report(error),
        }
    }

    /// The sender a record claims in its header (when the transport does not say).
    fn claimed_sender(&self, buffer: u32, len: usize) -> usize {
        if len < super::HEADER {
            return usize::MAX;
        }
        let mut src = [0u8; 4];
        // SAFETY: the receive completed with at least HEADER bytes in this buffer, which
        // belongs to the completion's processing now.
        unsafe {
            std::ptr::copy_nonoverlapping(self.recv_buffer(buffer).add(4), src.as_mut_ptr(), 4)
        };
        u32::from_le_bytes(src) as usize
    }

    fn send_done(&self, slot: u32) {
        let to = self.send_dest[slot as usize].load(Ordering::Relaxed);
        lock(&self.free_sends).push(slot);
        self.inflight[to].fetch_sub(1, Ordering::Release);
    }
}

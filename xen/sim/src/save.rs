//! Save and restore ([`DomainSave`]) of a suspended domain.
//!
//! A host-mode domain is a thread running a Rust function plus the pages it
//! allocated. A guest that suspends blocks inside its
//! [`suspend_self`](xen::platform::Platform::suspend_self) call. Saving
//! captures:
//! * a copy of every page it owns (the memfd contents) — its xenstore and
//!   console ring pages excepted, which a restore replaces with fresh ones,
//!   as Xen's restore re-seeds them; the pages' address ranges are then
//!   backed by private zero memory and the frames go back to the pool once
//!   the domain is destroyed (see `memory::Backing`);
//! * its configuration (memory and vCPU limits, handle, image name);
//! * its parked thread: the channel that ends the suspend call, and the
//!   thread's join handle.
//!
//! The domain itself stays in the table, shut down, for the toolstack to
//! destroy as usual (grants revoked, ports closed, `VIRQ_DOM_EXC`).
//!
//! Restoring creates a new domain with the same configuration, backs each
//! saved allocation with new frames holding the saved bytes (same guest
//! addresses, new gfns: host-mode gfns are host-wide frame numbers), gives
//! the guest fresh ring pages, reserved grants and unbound ports, as the
//! builder does, and re-points the guest's handle at the new domid. The
//! first unpause of the new domain makes the suspend call return
//! [`SuspendOutcome::Resumed`].
//!
//! A [`SavedDomain`] that is dropped without a restore ends the parked
//! thread: its suspend call fails with `ESRCH` and the guest returns; the
//! drop waits for that (bounded). `restore` consumes the image, so an image
//! cannot be restored twice. If a restore fails the image is lost, as if
//! dropped.
//!
//! Where this departs from Xen: grants the guest had mapped from other
//! domains stay mapped (their memory stays valid) instead of being torn
//! down with the old domain, and suspend is never cancelled
//! ([`SuspendOutcome::Cancelled`] is not produced).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xen::platform::{
    BuiltDomain, CreateConfig, DomainSave, Error, PortStatus, RestoreTarget, Restored, Result,
    RunState, ShutdownReason,
};
use xen::{DomId, Errno, Gfn, GrantRef};

use crate::domain::{PagesInner, SimDomain, StartInfo};
use crate::hypervisor::{Grant, Parked, Shared};

/// How long dropping an image waits for its guest thread to return.
const DROP_JOIN: Duration = Duration::from_secs(5);

/// One saved allocation of pages.
struct SavedPages {
    pages: Weak<PagesInner>,
    /// The saved bytes; `None` for a ring page, which restores fresh.
    contents: Option<Vec<u8>>,
}

/// A suspended domain saved by [`DomainSave::save`]: its memory, its
/// configuration and its parked guest thread. Restore it with
/// [`DomainSave::restore`], or drop it to discard the domain.
///
/// `restore` takes the image by value, so restoring it twice does not
/// compile:
///
/// ```compile_fail
/// use xen::platform::{DomainSave, RestoreTarget};
/// fn twice(d0: &xen_sim::SimDomain, img: xen_sim::SavedDomain, t: &RestoreTarget) {
///     let _ = d0.restore(img, t);
///     let _ = d0.restore(img, t); // use of moved value
/// }
/// ```
pub struct SavedDomain {
    shared: Arc<Shared>,
    from: DomId,
    cfg: CreateConfig,
    image: Option<String>,
    start: Option<Arc<StartInfo>>,
    pages: Vec<SavedPages>,
    parked: Option<Parked>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SavedDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedDomain")
            .field("from", &self.from)
            .field("image", &self.image)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl SavedDomain {
    /// The domain it was saved from.
    pub fn saved_from(&self) -> DomId {
        self.from
    }

    /// Bytes of guest memory the image holds.
    pub fn memory_bytes(&self) -> usize {
        self.pages
            .iter()
            .filter_map(|p| p.contents.as_ref().map(Vec::len))
            .sum()
    }
}

impl Drop for SavedDomain {
    fn drop(&mut self) {
        // Ends the guest's suspend call with ESRCH.
        self.parked = None;
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + DROP_JOIN;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(from = self.from.0, "discarded guest did not return");
            }
        }
    }
}

fn errno(e: Errno) -> Error {
    Error::Errno(e)
}

fn is_ring(start: Option<&Arc<StartInfo>>, p: &Arc<PagesInner>) -> bool {
    start.is_some_and(|s| Arc::ptr_eq(s.store.inner(), p) || Arc::ptr_eq(s.console.inner(), p))
}

impl DomainSave for SimDomain {
    type Saved = SavedDomain;

    fn save(&self, dom: DomId) -> Result<SavedDomain> {
        let mut saved = {
            let mut st = self.shared.lock();
            self.privileged(&mut st)?;
            let d = st.dom_mut(dom)?;
            if d.state != RunState::Shutdown(ShutdownReason::Suspend) || d.parked.is_none() {
                return Err(errno(Errno::EINVAL));
            }
            let parked = d.parked.take();
            if let Some(p) = &parked {
                // Until restored, the guest acts for no domain.
                p.ident.store(DomId::INVALID.0, Ordering::Release);
            }
            SavedDomain {
                shared: self.shared.clone(),
                from: dom,
                cfg: d.cfg,
                image: d.image.clone(),
                start: d.start.clone(),
                pages: std::mem::take(&mut d.pages)
                    .into_iter()
                    .map(|pages| SavedPages {
                        pages,
                        contents: None,
                    })
                    .collect(),
                parked,
                thread: d.thread.take(),
            }
        };
        let start = saved.start.clone();
        saved.pages.retain(|p| p.pages.strong_count() > 0);
        for sp in &mut saved.pages {
            let Some(p) = sp.pages.upgrade() else {
                continue;
            };
            // The old domain keeps counting the pages until it is
            // destroyed; from now on they belong to the image.
            p.owner.store(DomId::INVALID.0, Ordering::Release);
            sp.contents = p
                .backing
                .detach(!is_ring(start.as_ref(), &p))
                .map_err(|_| errno(Errno::EIO))?;
        }
        tracing::info!(dom = dom.0, bytes = saved.memory_bytes(), "domain saved");
        Ok(saved)
    }

    fn restore(&self, mut saved: SavedDomain, target: &RestoreTarget) -> Result<Restored> {
        if !Arc::ptr_eq(&saved.shared, &self.shared) {
            return Err(errno(Errno::EINVAL));
        }
        let nd = {
            let mut st = self.shared.lock();
            self.privileged(&mut st)?;
            st.create(&saved.cfg, false)?
        };
        match self.fill(&mut saved, nd, target) {
            Ok(rings) => {
                tracing::info!(from = saved.from.0, dom = nd.0, "domain restored");
                Ok(Restored { domid: nd, rings })
            }
            Err(e) => {
                let removed = self.shared.lock().destroy(nd);
                drop(removed);
                Err(e)
            }
        }
    }
}

impl SimDomain {
    /// Moves the image into the new (paused) domain `nd`.
    fn fill(
        &self,
        saved: &mut SavedDomain,
        nd: DomId,
        target: &RestoreTarget,
    ) -> Result<Option<BuiltDomain>> {
        for sp in &saved.pages {
            let Some(p) = sp.pages.upgrade() else {
                continue;
            };
            let n = p.backing.pages();
            {
                let mut st = self.shared.lock();
                let d = st.dom_mut(nd)?;
                if d.tot_pages + n as u64 > d.max_pages() {
                    return Err(errno(Errno::ENOMEM));
                }
                d.tot_pages += n as u64;
                p.owner.store(nd.0, Ordering::Release);
                d.add_pages(&p);
            }
            let frames = self
                .shared
                .pool
                .alloc(n)
                .map_err(|_| errno(Errno::ENOMEM))?;
            p.backing
                .attach(
                    frames.into_iter().map(Arc::new).collect(),
                    sp.contents.as_deref(),
                )
                .map_err(|_| errno(Errno::ENOMEM))?;
        }
        let mut st = self.shared.lock();
        let d = st.dom_mut(nd)?;
        let rings = match &saved.start {
            None => None,
            Some(start) => {
                let mut ring = |gref: GrantRef, p: &Arc<PagesInner>, to: DomId| -> Result<Gfn> {
                    let frame = p.backing.frame(0).ok_or(errno(Errno::ENOMEM))?;
                    let gfn = Gfn(frame.index());
                    d.grants.insert(
                        gref.0,
                        Grant {
                            to,
                            frame,
                            readonly: false,
                            maps: 0,
                        },
                    );
                    Ok(gfn)
                };
                let store_gfn = ring(
                    GrantRef::RESERVED_XENSTORE,
                    start.store.inner(),
                    target.xenstore_domid,
                )?;
                let console_gfn = ring(
                    GrantRef::RESERVED_CONSOLE,
                    start.console.inner(),
                    target.console_domid,
                )?;
                let store_port = d.alloc_port(PortStatus::Unbound {
                    remote: target.xenstore_domid,
                })?;
                let console_port = d.alloc_port(PortStatus::Unbound {
                    remote: target.console_domid,
                })?;
                start.store_port.store(store_port.0, Ordering::Release);
                start.console_port.store(console_port.0, Ordering::Release);
                Some(BuiltDomain {
                    store_gfn,
                    store_port,
                    console_gfn,
                    console_port,
                })
            }
        };
        d.image = saved.image.take();
        d.start = saved.start.take();
        d.launched = true;
        d.thread = saved.thread.take();
        if let Some(p) = saved.parked.take() {
            p.ident.store(nd.0, Ordering::Release);
            d.resume = Some(p);
        }
        Ok(rings)
    }
}

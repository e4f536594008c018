//! [`SimDomain`]: one domain's view of the simulated host, implementing every
//! platform trait of the `xen` crate.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use xen::platform::{
    BuiltDomain, Clock, Console, CreateConfig, DomainBuilder, DomainControl, DomainImage,
    DomainInfo, Error, EventChannel, ForeignMapping, GrantStatus, GrantTable, LocalPages, Platform,
    PortStatus, Result, RunState, ShutdownReason, StoreRing, SuspendOutcome, Virq,
};
use xen::{DomId, Errno, EvtchnPort, Gfn, GrantRef, SharedMem, SharedRo, PAGE_SIZE};

use crate::hypervisor::{spawn_domain, Dom, Grant, Parked, Shared, State};
use crate::memory::{Backing, Frame, Window};

/// What the builder prepared for a domain started from an image.
pub(crate) struct StartInfo {
    pub(crate) cmdline: String,
    pub(crate) store: SimPages,
    /// The guest's port for the xenstore domain; a restore allocates a new one.
    pub(crate) store_port: AtomicU32,
    /// The console ring page (`io/console.h`): [`Console::write`] of a
    /// built domain produces into its `out` ring, the console backend
    /// (dom0) consumes.
    pub(crate) console: SimPages,
    /// The guest's console port (`HVM_PARAM_CONSOLE_EVTCHN`); a restore
    /// allocates a new one.
    pub(crate) console_port: AtomicU32,
}

/// A handle on one domain of a simulated host. Cheap to clone; usable from
/// any thread. Every call fails with `ESRCH` once the domain has shut down or
/// been destroyed.
///
/// Clones share one identity: when a suspended guest is restored into a new
/// domain, every clone of its handle acts for the new domid from then on.
#[derive(Clone)]
pub struct SimDomain {
    pub(crate) shared: Arc<Shared>,
    domid: Arc<AtomicU16>,
    start: Option<Arc<StartInfo>>,
}

impl std::fmt::Debug for SimDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDomain")
            .field("domid", &self.id())
            .finish()
    }
}

fn errno(e: Errno) -> Error {
    Error::Errno(e)
}

fn gnt(s: GrantStatus) -> Error {
    Error::Grant(s)
}

impl SimDomain {
    pub(crate) fn new(shared: Arc<Shared>, domid: DomId, start: Option<Arc<StartInfo>>) -> Self {
        SimDomain {
            shared,
            domid: Arc::new(AtomicU16::new(domid.0)),
            start,
        }
    }

    /// The domain this handle acts for (changes when a saved guest is
    /// restored; `DomId::INVALID` while its image is saved).
    fn id(&self) -> DomId {
        DomId(self.domid.load(Ordering::Acquire))
    }

    /// The shared identity of this handle and its clones.
    pub(crate) fn ident(&self) -> Arc<AtomicU16> {
        self.domid.clone()
    }

    /// Locks the host and checks that we are still alive.
    fn me<'a>(&self, st: &'a mut State) -> Result<&'a mut Dom> {
        let d = st.dom_mut(self.id())?;
        if d.alive() {
            Ok(d)
        } else {
            Err(errno(Errno::ESRCH))
        }
    }

    pub(crate) fn privileged(&self, st: &mut State) -> Result<()> {
        if self.me(st)?.privileged {
            Ok(())
        } else {
            Err(errno(Errno::EPERM))
        }
    }

    fn deliver(shared: &Shared, to: DomId, port: EvtchnPort) {
        let mut st = shared.lock();
        if let Ok(d) = st.dom_mut(to) {
            d.raise(port);
        }
    }
}

/// Pages a simulated domain owns.
pub struct SimPages {
    inner: Arc<PagesInner>,
}

/// The state of one allocation of pages, shared with the owner's page list
/// (so that save/restore can find and re-back it).
pub(crate) struct PagesInner {
    pub(crate) backing: Backing,
    /// The owning domain, whose `tot_pages` counts these pages;
    /// `DomId::INVALID` while the pages belong to a saved image.
    pub(crate) owner: AtomicU16,
    pub(crate) shared: Arc<Shared>,
}

impl PagesInner {
    pub(crate) fn owner(&self) -> DomId {
        DomId(self.owner.load(Ordering::Acquire))
    }
}

impl SimPages {
    pub(crate) fn inner(&self) -> &Arc<PagesInner> {
        &self.inner
    }
}

impl LocalPages for SimPages {
    fn mem(&self) -> SharedMem<'_> {
        self.inner.backing.mem()
    }
    fn count(&self) -> usize {
        self.inner.backing.pages()
    }
    fn gfn(&self, index: usize) -> Gfn {
        // While saved the pages have no frames: report an impossible gfn.
        Gfn(self
            .inner
            .backing
            .frame(index)
            .map_or(u64::MAX, |f| f.index()))
    }
}

impl Drop for PagesInner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Ok(d) = st.dom_mut(self.owner()) {
            d.tot_pages = d.tot_pages.saturating_sub(self.backing.pages() as u64);
        }
    }
}

/// A simulated domain's mapping of another domain's grants.
pub struct SimMapping {
    window: Window,
    writable: bool,
    granter: DomId,
    refs: Vec<GrantRef>,
    shared: Arc<Shared>,
}

impl ForeignMapping for SimMapping {
    fn ro(&self) -> SharedRo<'_> {
        self.window.mem().ro()
    }
    fn rw(&self) -> Option<SharedMem<'_>> {
        self.writable.then(|| self.window.mem())
    }
    fn granter(&self) -> DomId {
        self.granter
    }
}

impl Drop for SimMapping {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Ok(d) = st.dom_mut(self.granter) {
            for (r, f) in self.refs.iter().zip(self.window.frames()) {
                if let Some(g) = d.grants.get_mut(&r.0) {
                    if Arc::ptr_eq(&g.frame, f) {
                        g.maps = g.maps.saturating_sub(1);
                    }
                }
            }
        }
    }
}

impl GrantTable for SimDomain {
    type Pages = SimPages;
    type Mapping = SimMapping;

    fn alloc_pages(&self, count: usize) -> Result<SimPages> {
        if count == 0 {
            return Err(errno(Errno::EINVAL));
        }
        {
            let mut st = self.shared.lock();
            let me = self.me(&mut st)?;
            if me.tot_pages + count as u64 > me.max_pages() {
                return Err(errno(Errno::ENOMEM));
            }
            me.tot_pages += count as u64;
        }
        let undo = |shared: &Shared| {
            if let Ok(d) = shared.lock().dom_mut(self.id()) {
                d.tot_pages = d.tot_pages.saturating_sub(count as u64);
            }
        };
        let frames = match self.shared.pool.alloc(count) {
            Ok(f) => f,
            Err(_) => {
                undo(&self.shared);
                return Err(errno(Errno::ENOMEM));
            }
        };
        let backing = match Backing::new(
            &self.shared.pool,
            frames.into_iter().map(Arc::new).collect(),
        ) {
            Ok(b) => b,
            Err(_) => {
                undo(&self.shared);
                return Err(errno(Errno::ENOMEM));
            }
        };
        let inner = Arc::new(PagesInner {
            backing,
            owner: AtomicU16::new(self.id().0),
            shared: self.shared.clone(),
        });
        // Register with the owner, for save/restore.
        if let Ok(d) = self.shared.lock().dom_mut(self.id()) {
            d.add_pages(&inner);
        }
        Ok(SimPages { inner })
    }

    fn grant_access(
        &self,
        pages: &SimPages,
        index: usize,
        to: DomId,
        readonly: bool,
    ) -> Result<GrantRef> {
        if pages.inner.owner() != self.id() || !Arc::ptr_eq(&pages.inner.shared, &self.shared) {
            return Err(errno(Errno::EINVAL));
        }
        let frame = pages
            .inner
            .backing
            .frame(index)
            .ok_or(errno(Errno::EINVAL))?;
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        let gref = match me.free_grefs.pop() {
            Some(r) => r,
            None => {
                // Grant table v1: 512 entries of 8 bytes per 4 KiB frame.
                let limit = me.cfg.max_grant_frames.saturating_mul(512);
                if me.next_gref >= limit {
                    return Err(gnt(GrantStatus::NoSpace));
                }
                me.next_gref += 1;
                me.next_gref - 1
            }
        };
        me.grants.insert(
            gref,
            Grant {
                to,
                frame,
                readonly,
                maps: 0,
            },
        );
        Ok(GrantRef(gref))
    }

    fn end_access(&self, gref: GrantRef) -> Result<()> {
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        match me.grants.get(&gref.0) {
            None => Err(gnt(GrantStatus::BadGntref)),
            Some(g) if g.maps > 0 => Err(errno(Errno::EBUSY)),
            Some(_) => {
                me.grants.remove(&gref.0);
                if gref.0 >= GrantRef::FIRST_FREE.0 {
                    me.free_grefs.push(gref.0);
                }
                Ok(())
            }
        }
    }

    fn map(&self, from: DomId, refs: &[GrantRef], readonly: bool) -> Result<SimMapping> {
        if refs.is_empty() {
            return Err(errno(Errno::EINVAL));
        }
        let mut frames: Vec<Arc<Frame>> = Vec::with_capacity(refs.len());
        {
            let mut st = self.shared.lock();
            self.me(&mut st)?;
            let granter = st.dom_mut(from).map_err(|_| gnt(GrantStatus::BadDomain))?;
            for r in refs {
                let g = granter
                    .grants
                    .get(&r.0)
                    .filter(|g| g.to == self.id())
                    .ok_or(gnt(GrantStatus::BadGntref))?;
                if g.readonly && !readonly {
                    return Err(gnt(GrantStatus::PermissionDenied));
                }
                frames.push(g.frame.clone());
            }
            for r in refs {
                if let Some(g) = granter.grants.get_mut(&r.0) {
                    g.maps += 1;
                }
            }
        }
        let mapping = SimMapping {
            window: Window::new(frames).map_err(|_| gnt(GrantStatus::NoSpace))?,
            writable: !readonly,
            granter: from,
            refs: refs.to_vec(),
            shared: self.shared.clone(),
        };
        Ok(mapping)
    }

    fn copy_from_grant(
        &self,
        from: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<()> {
        let frame = self.copy_frame(from, gref, offset, buf.len(), false)?;
        frame.mem().read_bytes(offset as usize, buf);
        Ok(())
    }

    fn copy_to_grant(&self, to: DomId, gref: GrantRef, offset: u16, buf: &[u8]) -> Result<()> {
        let frame = self.copy_frame(to, gref, offset, buf.len(), true)?;
        frame.mem().write_bytes(offset as usize, buf);
        Ok(())
    }

    /// One lock of the hypervisor for the whole batch (checks and frame
    /// look-ups), then the copies, as one `GNTTABOP_copy` hypercall does.
    fn copy_batch(
        &self,
        segs: &mut [xen::platform::CopySeg<'_>],
    ) -> std::result::Result<(), (usize, xen::platform::Error)> {
        use xen::platform::CopySeg;
        let mut frames = Vec::with_capacity(segs.len());
        let mut failed = None;
        {
            let mut st = self.shared.lock();
            for (i, s) in segs.iter().enumerate() {
                let (peer, gref, offset, len, write) = match s {
                    CopySeg::FromGrant {
                        dom,
                        gref,
                        offset,
                        buf,
                    } => (*dom, *gref, *offset, buf.len(), false),
                    CopySeg::ToGrant {
                        dom,
                        gref,
                        offset,
                        buf,
                    } => (*dom, *gref, *offset, buf.len(), true),
                };
                match self.copy_frame_locked(&mut st, peer, gref, offset, len, write) {
                    Ok(f) => frames.push(f),
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                }
            }
        }
        for (s, f) in segs.iter_mut().zip(&frames) {
            match s {
                CopySeg::FromGrant { offset, buf, .. } => f.mem().read_bytes(*offset as usize, buf),
                CopySeg::ToGrant { offset, buf, .. } => f.mem().write_bytes(*offset as usize, buf),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl SimDomain {
    /// Checks a `GNTTABOP_copy` segment and returns the frame it targets.
    fn copy_frame(
        &self,
        peer: DomId,
        gref: GrantRef,
        offset: u16,
        len: usize,
        write: bool,
    ) -> Result<Arc<Frame>> {
        let mut st = self.shared.lock();
        self.copy_frame_locked(&mut st, peer, gref, offset, len, write)
    }

    /// [`copy_frame`](Self::copy_frame) with the hypervisor locked.
    fn copy_frame_locked(
        &self,
        st: &mut std::sync::MutexGuard<'_, State>,
        peer: DomId,
        gref: GrantRef,
        offset: u16,
        len: usize,
        write: bool,
    ) -> Result<Arc<Frame>> {
        if offset as usize + len > PAGE_SIZE {
            return Err(gnt(GrantStatus::BadCopyArg));
        }
        self.me(st)?;
        let granter = st.dom(peer).map_err(|_| gnt(GrantStatus::BadDomain))?;
        let g = granter
            .grants
            .get(&gref.0)
            .filter(|g| g.to == self.id())
            .ok_or(gnt(GrantStatus::BadGntref))?;
        if write && g.readonly {
            return Err(gnt(GrantStatus::PermissionDenied));
        }
        Ok(g.frame.clone())
    }
}

impl EventChannel for SimDomain {
    fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort> {
        let mut st = self.shared.lock();
        self.me(&mut st)?.alloc_port(PortStatus::Unbound { remote })
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort> {
        let mut st = self.shared.lock();
        self.me(&mut st)?;
        let rp = st.dom(remote)?.port(remote_port)?;
        match rp.status {
            PortStatus::Unbound { remote: allowed } if allowed == self.id() => {}
            _ => return Err(errno(Errno::EINVAL)),
        }
        let local = self.me(&mut st)?.alloc_port(PortStatus::Interdomain {
            dom: remote,
            port: remote_port,
        })?;
        // As in Xen, the new local port starts pending.
        self.me(&mut st)?.port_mut(local)?.pending = true;
        st.dom_mut(remote)?.port_mut(remote_port)?.status = PortStatus::Interdomain {
            dom: self.id(),
            port: local,
        };
        Ok(local)
    }

    fn bind_virq(&self, virq: Virq) -> Result<EvtchnPort> {
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        if me.virqs.contains_key(&(virq as u32)) {
            return Err(errno(Errno::EEXIST));
        }
        let p = me.alloc_port(PortStatus::Virq(virq))?;
        me.virqs.insert(virq as u32, p);
        Ok(p)
    }

    fn notify(&self, port: EvtchnPort) -> Result<()> {
        let mut st = self.shared.lock();
        // A paused domain does not run: it stops here until unpaused.
        loop {
            let me = self.me(&mut st)?;
            if !me.paused {
                break;
            }
            let wake = me.wake.clone();
            st = wake
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        self.notify_locked(st, port)
    }

    fn mask(&self, port: EvtchnPort) -> Result<()> {
        let mut st = self.shared.lock();
        self.me(&mut st)?.port_mut(port)?.masked = true;
        Ok(())
    }

    fn unmask(&self, port: EvtchnPort) -> Result<()> {
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        let p = me.port_mut(port)?;
        p.masked = false;
        if p.pending {
            me.wake.notify_all();
        }
        Ok(())
    }

    fn close(&self, port: EvtchnPort) -> Result<()> {
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        let p = *me.port(port)?;
        me.ports[port.0 as usize] = None;
        match p.status {
            PortStatus::Interdomain { dom, port: rport } => {
                // Xen makes the peer's port unbound again. The simulator also
                // raises it, so a peer blocked in `wait` notices the close.
                if let Ok(peer) = st.dom_mut(dom) {
                    if let Ok(pp) = peer.port_mut(rport) {
                        pp.status = PortStatus::Unbound { remote: self.id() };
                    }
                    peer.raise(rport);
                }
            }
            PortStatus::Virq(v) => {
                me.virqs.remove(&(v as u32));
            }
            _ => {}
        }
        Ok(())
    }

    fn status(&self, port: EvtchnPort) -> Result<PortStatus> {
        let mut st = self.shared.lock();
        let me = self.me(&mut st)?;
        Ok(me
            .port(port)
            .map(|p| p.status)
            .unwrap_or(PortStatus::Closed))
    }

    fn clear_pending(&self, port: EvtchnPort) -> Result<bool> {
        let mut st = self.shared.lock();
        let p = self.me(&mut st)?.port_mut(port)?;
        Ok(std::mem::replace(&mut p.pending, false))
    }

    fn wait(&self, ports: &[EvtchnPort], timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            let me = self.me(&mut st)?;
            if !me.paused
                && ports
                    .iter()
                    .any(|&p| me.port(p).map(|p| p.pending && !p.masked).unwrap_or(false))
            {
                return Ok(true);
            }
            let wake = me.wake.clone();
            match deadline {
                None => {
                    st = wake
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    st = wake
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl SimDomain {
    fn notify_locked(
        &self,
        mut st: std::sync::MutexGuard<'_, State>,
        port: EvtchnPort,
    ) -> Result<()> {
        let status = self.me(&mut st)?.port(port)?.status;
        let (to, rport) = match status {
            PortStatus::Interdomain { dom, port } => (dom, port),
            // Xen: sending on an unbound port is accepted and goes nowhere.
            PortStatus::Unbound { .. } => return Ok(()),
            _ => return Err(errno(Errno::EINVAL)),
        };
        if let Some(f) = st.faults.get_mut(&self.id().0) {
            if f.drop_next > 0 {
                f.drop_next -= 1;
                tracing::debug!(
                    from = self.id().0,
                    to = to.0,
                    "notification dropped (fault)"
                );
                return Ok(());
            }
            if let Some(delay) = f.delay {
                let shared = self.shared.clone();
                drop(st);
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    SimDomain::deliver(&shared, to, rport);
                });
                return Ok(());
            }
        }
        if let Ok(d) = st.dom_mut(to) {
            d.raise(rport);
        }
        Ok(())
    }
}

/// How long a guest's console write waits for room in a full ring while a
/// backend serves it (a rate-limited backend drains 2 KiB in about 30 ms);
/// past that the rest of the write is dropped and counted.
const CONSOLE_STALL: Duration = Duration::from_secs(1);

impl Console for SimDomain {
    /// A built domain writes into the `out` ring of its console page and
    /// notifies its console port, as a PV console driver does: while no
    /// backend has bound the port it writes what fits and drops the rest;
    /// with a backend it waits for room (at most [`CONSOLE_STALL`] per
    /// write). Every byte is also kept in the hypervisor's own per-domain
    /// log ([`crate::Hypervisor::console_output`], what Xen's `console_io`
    /// debug log would show), and the lines of domains without a console
    /// ring (dom0) go to `tracing`.
    fn write(&self, bytes: &[u8]) {
        self.shared.lock().console_write(self.id(), bytes);
        match &self.start {
            Some(start) => {
                let dropped = self.ring_write(start, bytes);
                if dropped > 0 {
                    if let Ok(d) = self.shared.lock().dom_mut(self.id()) {
                        d.console_dropped += dropped as u64;
                    }
                }
            }
            None => {
                let text = String::from_utf8_lossy(bytes);
                for line in text.lines().filter(|l| !l.is_empty()) {
                    tracing::info!(target: "console", dom = self.id().0, "{line}");
                }
            }
        }
    }
}

impl SimDomain {
    /// Produces `bytes` into the console ring of `start`; returns how many
    /// were dropped.
    fn ring_write(&self, start: &StartInfo, mut bytes: &[u8]) -> usize {
        use xen::abi::console::{mask_xencons_out, XENCONS_OUT_SIZE};
        const OUT: usize = 1024;
        const OUT_CONS: usize = 3080;
        const OUT_PROD: usize = 3084;
        let mem = start.console.mem();
        let port = EvtchnPort(start.console_port.load(Ordering::Acquire));
        let mut deadline = None;
        while !bytes.is_empty() {
            let cons = mem.atomic_u32(OUT_CONS).load(Ordering::Acquire);
            let prod = mem.atomic_u32(OUT_PROD).load(Ordering::Relaxed);
            let used = prod.wrapping_sub(cons) as usize;
            if used > XENCONS_OUT_SIZE {
                // The backend wrote nonsense into out_cons: stop using it.
                return bytes.len();
            }
            let free = XENCONS_OUT_SIZE - used;
            if free == 0 {
                let served = matches!(self.status(port), Ok(PortStatus::Interdomain { .. }));
                let now = Instant::now();
                let until = *deadline.get_or_insert(now + CONSOLE_STALL);
                if !served || now >= until {
                    tracing::debug!(
                        dom = self.id().0,
                        served,
                        "console ring full: write dropped"
                    );
                    return bytes.len();
                }
                match self.wait(&[port], Some((until - now).min(Duration::from_millis(10)))) {
                    Ok(_) => {
                        let _ = self.clear_pending(port);
                    }
                    Err(_) => return bytes.len(),
                }
                continue;
            }
            let n = free.min(bytes.len());
            let at = mask_xencons_out(prod);
            let first = n.min(XENCONS_OUT_SIZE - at);
            mem.write_bytes(OUT + at, &bytes[..first]);
            mem.write_bytes(OUT, &bytes[first..n]);
            mem.atomic_u32(OUT_PROD)
                .store(prod.wrapping_add(n as u32), Ordering::Release);
            bytes = &bytes[n..];
            if self.notify(port).is_err() {
                return bytes.len();
            }
        }
        0
    }
}

impl Clock for SimDomain {
    fn now(&self) -> Duration {
        self.shared.boot.elapsed()
    }
}

impl Platform for SimDomain {
    fn domid(&self) -> DomId {
        self.id()
    }

    fn cmdline(&self) -> &str {
        self.start.as_ref().map_or("", |s| s.cmdline.as_str())
    }

    fn store_ring(&self) -> Option<StoreRing<'_>> {
        self.start.as_ref().map(|s| StoreRing {
            page: s.store.mem(),
            port: EvtchnPort(s.store_port.load(Ordering::Acquire)),
        })
    }

    fn shutdown_self(&self, reason: ShutdownReason) {
        let _ = self.shared.lock().shutdown(self.id(), reason);
    }

    /// The domain shuts down with `SHUTDOWN_suspend` and this thread parks
    /// until the toolstack restores its image and unpauses the new domain
    /// (`Resumed`), or destroys the domain without saving it, or discards
    /// the image (`ESRCH`).
    fn suspend_self(&self) -> Result<SuspendOutcome> {
        let (wake, parked) = mpsc::sync_channel(1);
        {
            let mut st = self.shared.lock();
            let d = self.id();
            self.me(&mut st)?.parked = Some(Parked {
                wake,
                ident: self.ident(),
            });
            st.shutdown(d, ShutdownReason::Suspend)?;
        }
        parked.recv().map_err(|_| errno(Errno::ESRCH))
    }
}

impl DomainControl for SimDomain {
    fn create(&self, cfg: &CreateConfig) -> Result<DomId> {
        if cfg.max_vcpus == 0 {
            return Err(errno(Errno::EINVAL));
        }
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        let d = st.create(cfg, false)?;
        tracing::debug!(dom = d.0, "domain created");
        Ok(d)
    }

    fn set_max_vcpus(&self, dom: DomId, n: u32) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        if n == 0 {
            return Err(errno(Errno::EINVAL));
        }
        st.dom_mut(dom)?.cfg.max_vcpus = n;
        Ok(())
    }

    fn set_max_mem(&self, dom: DomId, kib: u64) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        st.dom_mut(dom)?.cfg.max_mem_kib = kib;
        Ok(())
    }

    fn pause(&self, dom: DomId) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        let d = st.dom_mut(dom)?;
        if !d.alive() {
            return Err(errno(Errno::EINVAL));
        }
        d.paused = true;
        d.state = RunState::Paused;
        Ok(())
    }

    fn unpause(&self, dom: DomId) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        let d = st.dom_mut(dom)?;
        if !d.alive() {
            return Err(errno(Errno::EINVAL));
        }
        d.paused = false;
        d.state = RunState::Running;
        d.wake.notify_all();
        // The first unpause of a restored domain returns from the guest's
        // suspend call.
        if let Some(p) = d.resume.take() {
            let _ = p.wake.try_send(SuspendOutcome::Resumed);
            return Ok(());
        }
        // The first unpause of a built domain starts its image.
        if d.launched || d.start.is_none() {
            return Ok(());
        }
        d.launched = true;
        let start = d.start.clone();
        let image = d.image.clone().unwrap_or_default();
        drop(st);
        let entry = self
            .shared
            .images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&image)
            .cloned()
            .ok_or(errno(Errno::ENOEXEC))?;
        let h = spawn_domain(&self.shared, dom, start, entry);
        if let Ok(d) = self.shared.lock().dom_mut(dom) {
            d.thread = Some(h);
        }
        Ok(())
    }

    fn shutdown(&self, dom: DomId, reason: ShutdownReason) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        st.shutdown(dom, reason)
    }

    fn destroy(&self, dom: DomId) -> Result<()> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        if dom == self.id() {
            return Err(errno(Errno::EINVAL));
        }
        let removed = st.destroy(dom)?;
        drop(st);
        // Its pages and grants go back to the pool outside the lock; its
        // thread (if any) sees ESRCH and returns by itself.
        drop(removed);
        Ok(())
    }

    fn info(&self, dom: DomId) -> Result<DomainInfo> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        st.info(dom)
    }

    fn list(&self, start: DomId, out: &mut [DomainInfo]) -> Result<usize> {
        let mut st = self.shared.lock();
        self.privileged(&mut st)?;
        let ids: Vec<DomId> = st
            .doms
            .range(start.0..)
            .take(out.len())
            .map(|(&d, _)| DomId(d))
            .collect();
        for (slot, d) in out.iter_mut().zip(&ids) {
            *slot = st.info(*d)?;
        }
        Ok(ids.len())
    }
}

impl DomainBuilder for SimDomain {
    fn build(&self, dom: DomId, image: &DomainImage<'_>) -> Result<BuiltDomain> {
        {
            let mut st = self.shared.lock();
            self.privileged(&mut st)?;
            let d = st.dom(dom)?;
            if d.start.is_some() || d.thread.is_some() {
                return Err(errno(Errno::EEXIST));
            }
        }
        let name = std::str::from_utf8(image.kernel).map_err(|_| errno(Errno::ENOEXEC))?;
        if !self
            .shared
            .images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(name)
        {
            return Err(errno(Errno::ENOEXEC));
        }
        // The rings are the guest's own pages, counted against its memory,
        // offered through the reserved grant entries.
        let guest = SimDomain::new(self.shared.clone(), dom, None);
        let store = guest.alloc_pages(1)?;
        let console = guest.alloc_pages(1)?;
        let mut st = self.shared.lock();
        let d = st.dom_mut(dom)?;
        for (gref, pages, to) in [
            (GrantRef::RESERVED_XENSTORE, &store, image.xenstore_domid),
            (GrantRef::RESERVED_CONSOLE, &console, image.console_domid),
        ] {
            d.grants.insert(
                gref.0,
                Grant {
                    to,
                    frame: pages.inner.backing.frame(0).ok_or(errno(Errno::ENOMEM))?,
                    readonly: false,
                    maps: 0,
                },
            );
        }
        let store_port = d.alloc_port(PortStatus::Unbound {
            remote: image.xenstore_domid,
        })?;
        let console_port = d.alloc_port(PortStatus::Unbound {
            remote: image.console_domid,
        })?;
        let built = BuiltDomain {
            store_gfn: store.gfn(0),
            store_port,
            console_gfn: console.gfn(0),
            console_port,
        };
        d.image = Some(name.to_owned());
        d.start = Some(Arc::new(StartInfo {
            cmdline: image.cmdline.to_owned(),
            store,
            store_port: AtomicU32::new(store_port.0),
            console,
            console_port: AtomicU32::new(console_port.0),
        }));
        Ok(built)
    }
}

//! What kind of file a descriptor number names, cached per number, so a
//! hook knows without a system call whether a call may block and which
//! way to try it without blocking.
//!
//! The cache is a flat static array of bytes, one per descriptor number
//! below [`TRACKED_DESCRIPTORS`]: no allocation and no lock, since hooks
//! run anywhere, a signal handler's `write` and `close` included. A number
//! is classified at its first hooked call on a fiber (`getsockopt(SO_TYPE)`,
//! then `fstat` for what is not a socket) and forgotten by the `close`,
//! `dup2` and `dup3` hooks before the number can name another file.
//!
//! A descriptor closed some other way (a raw `close` system call, the C
//! library closing its own) leaves a stale kind for whatever reuses the
//! number, and every stale kind is safe: a stale socket kind meets
//! `ENOTSOCK` and is classified again; a stale pollable kind is probed
//! with `poll`, which works on anything; a stale plain kind sends the
//! calls to the kernel, which blocks the worker as without the feature
//! (the hand-off monitor's case) until the number is closed.

use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;

/// Descriptor numbers whose kind is cached; calls on higher numbers go
/// to the kernel. The default `ulimit -n` of most systems is far below;
/// a guess at the most a server raises it to, and 1 MiB of zero pages
/// that are touched only where descriptors are used.
pub(crate) const TRACKED_DESCRIPTORS: usize = 1 << 20;

/// What a hook does with a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not classified yet (never stored as a result).
    Unknown,
    /// A regular file, a directory, a block device, or a number beyond
    /// [`TRACKED_DESCRIPTORS`]: straight to the kernel.
    Plain,
    /// A pipe, FIFO, terminal, other character device, eventfd, inotify,
    /// ...: probed with `poll` before the call.
    Pollable,
    /// A `SOCK_STREAM` socket: tried with `MSG_DONTWAIT`; a send
    /// completes the whole buffer, as the kernel's blocking send does.
    Stream,
    /// A `SOCK_SEQPACKET` socket (`write` on one adds `MSG_EOR`).
    SeqPacket,
    /// Any other socket (datagram, raw): one message per call.
    Datagram,
}

impl Kind {
    fn from_byte(byte: u8) -> Kind {
        match byte {
            1 => Kind::Plain,
            2 => Kind::Pollable,
            3 => Kind::Stream,
            4 => Kind::SeqPacket,
            5 => Kind::Datagram,
            _ => Kind::Unknown,
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Kind::Unknown => 0,
            Kind::Plain => 1,
            Kind::Pollable => 2,
            Kind::Stream => 3,
            Kind::SeqPacket => 4,
            Kind::Datagram => 5,
        }
    }

    /// Whether the descriptor is a socket.
    pub(crate) fn is_socket(self) -> bool {
        matches!(self, Kind::Stream | Kind::SeqPacket | Kind::Datagram)
    }
}

/// One byte per descriptor number ([`Kind`]); Relaxed: each byte is a
/// hint that stands alone, checked by the call it steers.
static KINDS: [AtomicU8; TRACKED_DESCRIPTORS] = [const { AtomicU8::new(0) }; TRACKED_DESCRIPTORS];

/// The kind of `fd`, classified now if it is not cached.
pub(crate) fn kind(fd: i32) -> Kind {
    let Some(slot) = usize::try_from(fd).ok().and_then(|fd| KINDS.get(fd)) else {
        return Kind::Plain;
    };
    let cached = Kind::from_byte(slot.load(Ordering::Relaxed));
    if cached != Kind::Unknown {
        return cached;
    }
    match classify(fd) {
        Some(kind) => {
            slot.store(kind.to_byte(), Ordering::Relaxed);
            kind
        }
        // Not open: the kernel call reports `EBADF` as without the hook.
        None => Kind::Plain,
    }
}

/// Forgets `fd`'s kind (its number is being closed or reused).
pub(crate) fn forget(fd: i32) {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|fd| KINDS.get(fd)) {
        slot.store(Kind::Unknown.to_byte(), Ordering::Relaxed);
    }
}

/// Asks the kernel what `fd` is; `None` if it is not open.
fn classify(fd: i32) -> Option<Kind> {
    let mut socket_type: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `socket_type`,
    // which lives across the call; a descriptor that is not a socket, or
    // not open, gives an error and writes nothing.
    let result = unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            &mut socket_type as *mut libc::c_int,
            &mut len as *mut libc::socklen_t,
        )
    };
    if result == 0 {
        return Some(match socket_type {
            libc::SOCK_STREAM => Kind::Stream,
            libc::SOCK_SEQPACKET => Kind::SeqPacket,
            _ => Kind::Datagram,
        });
    }
    // The failed getsockopt set errno; the hook restores the caller's.
    match Errno::last() {
        Errno::ENOTSOCK => {}
        _ => return None,
    }
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into `stat`, which lives across the
    // call.
    let result = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut stat as *mut libc::stat) };
    if result != 0 {
        return None;
    }
    Some(match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK => Kind::Plain,
        _ => Kind::Pollable,
    })
}

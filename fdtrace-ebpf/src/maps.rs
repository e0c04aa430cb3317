//! Maps and the read-only configuration shared by all programs. Sizes here
//! are defaults; the loader overrides them before load.
use aya_ebpf::{
    btf_maps::StackTrace,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use fdtrace_common::{
    Config, FdKey, GoInfo, GoKey, GoOrigin, GoroutineKey, Inflight, Kept, Loss, NodeConnect, NodeHandle,
    PyInfo, PyStack, SiteKey, SockOwner, DEFAULT_MAX_KEPT, DEFAULT_MAX_PY_STACKS, DEFAULT_MAX_SITES,
    DEFAULT_MAX_SOCKS, DEFAULT_MAX_TARGETS, DEFAULT_STACK_ENTRIES, MAX_EVENT_SIZE, STACK_DEPTH,
};

/// Every event, in the order the programs submitted them.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// User stacks of fd-creating events.
#[btf_map]
pub static STACKS: StackTrace<{ DEFAULT_STACK_ENTRIES as usize }, 0, STACK_DEPTH> = StackTrace::new();

/// Traced processes: tgid → `fdtrace_common::target` flags.
#[map]
pub static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(DEFAULT_MAX_TARGETS, 0);

/// Sockets of traced processes, for `inet_sock_set_state`: sk → owner.
/// LRU: a socket closed while nobody traced it must not pin a slot.
#[map]
pub static SOCKS: LruHashMap<u64, SockOwner> = LruHashMap::with_max_entries(DEFAULT_MAX_SOCKS, 0);

/// Pairing mode: fds open and kept in the kernel (`keep`).
#[map]
pub static OPEN_FDS: HashMap<FdKey, Kept> = HashMap::with_max_entries(DEFAULT_MAX_KEPT, 0);

/// Pairing mode: opens paired with their close in the kernel, per place
/// (`keep`).
#[map]
pub static PAIRS: HashMap<SiteKey, u64> = HashMap::with_max_entries(DEFAULT_MAX_SITES, 0);

/// Go programs being traced, with their `runtime.g` offsets.
#[map]
pub static GO_PROCS: HashMap<u32, GoInfo> = HashMap::with_max_entries(DEFAULT_MAX_TARGETS, 0);

/// Goroutine creations (`go` statements) and the creator's stack.
#[map]
pub static GO_CREATORS: LruHashMap<GoKey, GoOrigin> = LruHashMap::with_max_entries(1 << 14, 0);

/// net/http dial goroutines and the Transport they dial for.
#[map]
pub static GO_DIALS: LruHashMap<GoroutineKey, u64> = LruHashMap::with_max_entries(1 << 14, 0);

/// CPython processes being traced, with their interpreter's offsets
/// (`python`).
#[map]
pub static PY_PROCS: HashMap<u32, PyInfo> = HashMap::with_max_entries(DEFAULT_MAX_TARGETS, 0);

/// Python stacks at opens, by the hash events carry (`python`). Not
/// preallocated: most sessions trace no Python.
#[map]
pub static PY_STACKS: HashMap<u64, PyStack> =
    HashMap::with_max_entries(DEFAULT_MAX_PY_STACKS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// CPython threads: tid → its `PyThreadState`, as last found (`python`).
#[map]
pub static PY_THREADS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1 << 13, 0);

/// Node: TCP handles and the stack that made them (`node`).
#[map]
pub static NODE_HANDLES: LruHashMap<NodeHandle, GoOrigin> = LruHashMap::with_max_entries(1 << 14, 0);

/// Node: the connect each thread is making (`node`).
#[map]
pub static NODE_CONNECTS: LruHashMap<u32, NodeConnect> = LruHashMap::with_max_entries(1 << 12, 0);

/// Flags decided while attaching (`fdtrace_common::runtime_flags`), slot 0.
#[map]
pub static RUNTIME: Array<u32> = Array::with_max_entries(1, 0);

/// Syscall arguments stashed at entry, by tid. LRU: a thread killed inside
/// a syscall never reaches the exit hook, and its entry must not pin a slot.
#[map]
pub static INFLIGHT: LruHashMap<u32, Inflight> = LruHashMap::with_max_entries(16384, 0);

/// Loss counters, indexed by `fdtrace_common::Loss`.
#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(Loss::COUNT as u32, 0);

/// Room to build records before they are copied into the ring buffer,
/// handed out by `emit::Scratch`: slot 0 for the event, slot 1 for an
/// inline stack sent while slot 0 is being built, slot 2 for the user
/// registers (`emit::UserRegs`), slot 3 for the fds a recvmsg received,
/// slot 4 for an fd being kept (`keep`), slot 5 for a Python stack
/// (`python`).
#[map]
pub static SCRATCH: PerCpuArray<[u8; MAX_EVENT_SIZE]> = PerCpuArray::with_max_entries(6, 0);

/// Whether this CPU's [`SCRATCH`] is taken (`emit::Scratch`): 0 free, else
/// the number of programs that tried to take it.
#[map]
pub static SCRATCH_BUSY: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Written by the loader before load (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
// SAFETY: Config is plain integers; all-zero is "nothing configured".
pub static CONFIG: Config = unsafe { core::mem::zeroed() };

/// Reads one field of [`CONFIG`]. Volatile, so the compiler cannot fold
/// in the defaults above; the verifier sees the loader's frozen values and
/// prunes branches they rule out.
macro_rules! config {
    ($field:ident) => {
        // SAFETY: CONFIG is a plain static of integers.
        unsafe { core::ptr::read_volatile(&$crate::maps::CONFIG.$field) }
    };
}
pub(crate) use config;

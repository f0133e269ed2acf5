//! UUIDv7 generation (RFC 9562 §5.7, with the §6.2 method 1 counter).
//!
//! Each thread keeps the last millisecond it used and a 12-bit counter in `rand_a`, so the
//! IDs one thread makes are strictly increasing even within a millisecond; `rand_b` carries
//! 62 random bits from a per-thread generator seeded from the OS, so IDs made by different
//! threads or processes in the same millisecond do not collide in practice. No lock and no
//! system call per ID: that is where tower-http's per-request cost goes (a `getrandom` call
//! for every UUIDv4).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Everything a thread needs to make IDs, in one thread-local so that an ID costs one TLS
/// access.
#[derive(Clone, Copy)]
struct Generator {
    /// Millisecond and counter of the last ID.
    last_ms: u64,
    counter: u16,
    /// wyrand state; 0 until seeded.
    rng: u64,
    /// `(unix_ms, clock_nanos)` read together, at most a second ago (0 = never).
    anchor_ms: u64,
    anchor_nanos: u64,
}

thread_local! {
    static GENERATOR: Cell<Generator> = const {
        Cell::new(Generator { last_ms: 0, counter: 0, rng: 0, anchor_ms: 0, anchor_nanos: 0 })
    };
}

fn seed() -> u64 {
    // RandomState is seeded from the OS once per thread; mixing in the thread's address
    // space position keeps seeds apart even if two threads start in the same instant.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish() | 1
}

impl Generator {
    /// wyrand: fast, statistically solid, not cryptographic (request IDs are not secrets).
    fn next_random(&mut self) -> u64 {
        if self.rng == 0 {
            self.rng = seed();
        }
        self.rng = self.rng.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.rng) * u128::from(self.rng ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    }

    /// Milliseconds since the Unix epoch. Reading the wall clock costs 40 ns on a VM and
    /// the TSC 10, so the wall clock is read once a second per thread and the TSC between.
    fn unix_millis(&mut self, now_nanos: u64) -> u64 {
        let fresh = now_nanos.wrapping_sub(self.anchor_nanos) < 1_000_000_000;
        if self.anchor_ms == 0 || now_nanos < self.anchor_nanos || !fresh {
            self.anchor_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64);
            self.anchor_nanos = now_nanos;
        }
        self.anchor_ms + (now_nanos - self.anchor_nanos) / 1_000_000
    }

    /// The `(unix_ms, counter)` pair of the next ID.
    fn next_timestamp(&mut self, now_nanos: u64) -> (u64, u16) {
        let now_ms = self.unix_millis(now_nanos);
        if now_ms > self.last_ms {
            // Start each millisecond at a random counter in the lower half, leaving room to
            // count up (RFC 9562 §6.2, "fixed bit-length dedicated counter").
            self.last_ms = now_ms;
            self.counter = (self.next_random() & 0x7FF) as u16;
        } else if self.counter < 0xFFF {
            self.counter += 1;
        } else {
            // Counter exhausted (4096 IDs in one ms on one thread) or the clock went back:
            // borrow the next millisecond rather than repeat or reorder.
            self.last_ms += 1;
            self.counter = 0;
        }
        (self.last_ms, self.counter)
    }
}

/// 64 random bits from this thread's generator (for trace and span IDs).
pub(crate) fn random_u64() -> u64 {
    GENERATOR.with(|cell| {
        let mut g = cell.get();
        let r = g.next_random();
        cell.set(g);
        r
    })
}

/// A fresh UUIDv7 in its 36-character text form (`0190…-7…-8…-…`), lower-case hex.
pub fn new_uuid_v7() -> [u8; 36] {
    uuid_v7_at(crate::clock::system_nanos())
}

/// [`new_uuid_v7`] with a reading of the system clock the caller already has.
pub(crate) fn uuid_v7_at(now_nanos: u64) -> [u8; 36] {
    let (ms, counter, rand_b) = GENERATOR.with(|cell| {
        let mut g = cell.get();
        let (ms, counter) = g.next_timestamp(now_nanos);
        let rand_b = g.next_random();
        cell.set(g);
        (ms, counter, rand_b)
    });
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | ((counter >> 8) as u8 & 0x0F);
    bytes[7] = counter as u8;
    bytes[8..].copy_from_slice(&rand_b.to_be_bytes());
    bytes[8] = 0x80 | (bytes[8] & 0x3F);
    format_uuid(&bytes)
}

/// Two hex digits per byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0x0F]];
        i += 1;
    }
    table
};

fn format_uuid(bytes: &[u8; 16]) -> [u8; 36] {
    // Where each byte's two digits go in `8-4-4-4-12`.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [b'-'; 36];
    for (b, at) in bytes.iter().zip(AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn version_variant_and_layout() {
        let id = new_uuid_v7();
        let s = std::str::from_utf8(&id).unwrap();
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('7'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn strictly_increasing_and_unique_within_a_thread() {
        let ids: Vec<[u8; 36]> = (0..20_000).map(|_| new_uuid_v7()).collect();
        for w in ids.windows(2) {
            assert!(
                w[0] < w[1],
                "{:?} !< {:?}",
                std::str::from_utf8(&w[0]),
                std::str::from_utf8(&w[1])
            );
        }
    }

    #[test]
    fn unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| new_uuid_v7()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 40_000);
    }

    #[test]
    fn timestamp_is_now() {
        let id = new_uuid_v7();
        let hex: String = std::str::from_utf8(&id).unwrap().replace('-', "")[..12].to_owned();
        let ms = u64::from_str_radix(&hex, 16).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(ms) < 5_000);
    }
}

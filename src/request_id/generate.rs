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

thread_local! {
    static STATE: Cell<(u64, u16)> = const { Cell::new((0, 0)) };
    static RNG: Cell<u64> = Cell::new(seed());
    /// `(unix_ms, clock_nanos)` read together, at most a second ago.
    static WALL_ANCHOR: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Milliseconds since the Unix epoch. Reading the wall clock costs 40 ns on a VM; the TSC
/// costs 10, so the wall clock is read once a second per thread and the TSC in between.
fn unix_millis() -> u64 {
    let now = crate::clock::system_nanos();
    WALL_ANCHOR.with(|anchor| {
        let (anchor_ms, anchor_nanos) = anchor.get();
        if anchor_ms != 0 && now >= anchor_nanos && now - anchor_nanos < 1_000_000_000 {
            return anchor_ms + (now - anchor_nanos) / 1_000_000;
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        anchor.set((ms, now));
        ms
    })
}

fn seed() -> u64 {
    // RandomState is seeded from the OS once per thread; mixing in the thread's address
    // space position keeps seeds apart even if two threads start in the same instant.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish() | 1
}

/// wyrand: fast, statistically solid, not cryptographic (request IDs are not secrets).
fn next_random() -> u64 {
    RNG.with(|s| {
        let v = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(v);
        let t = u128::from(v) * u128::from(v ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    })
}

/// The `(unix_ms, counter)` pair for the next ID of this thread.
fn next_timestamp() -> (u64, u16) {
    let now_ms = unix_millis();
    STATE.with(|s| {
        let (last_ms, counter) = s.get();
        let next = if now_ms > last_ms {
            // Start each millisecond at a random counter in the lower half, leaving room to
            // count up (RFC 9562 §6.2, "fixed bit-length dedicated counter").
            (now_ms, (next_random() & 0x7FF) as u16)
        } else if counter < 0xFFF {
            (last_ms, counter + 1)
        } else {
            // Counter exhausted (4096 IDs in one ms on one thread) or the clock went back:
            // borrow the next millisecond rather than repeat or reorder.
            (last_ms + 1, 0)
        };
        s.set(next);
        next
    })
}

/// A fresh UUIDv7 in its 36-character text form (`0190…-7…-8…-…`), lower-case hex.
pub fn new_uuid_v7() -> [u8; 36] {
    let (ms, counter) = next_timestamp();
    let rand_b = next_random();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | ((counter >> 8) as u8 & 0x0F);
    bytes[7] = counter as u8;
    bytes[8..].copy_from_slice(&rand_b.to_be_bytes());
    bytes[8] = 0x80 | (bytes[8] & 0x3F);
    format_uuid(&bytes)
}

fn format_uuid(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut pos = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            pos += 1;
        }
        out[pos] = HEX[(b >> 4) as usize];
        out[pos + 1] = HEX[(b & 0x0F) as usize];
        pos += 2;
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

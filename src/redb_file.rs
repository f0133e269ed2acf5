//! Opening a redb file that this process may still be releasing, shared by the capabilities
//! that keep one (the history, the log store).

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

/// How long opening waits for a file this process is still releasing.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens (or creates) the file, waiting briefly while it is open elsewhere in this process:
/// an observer just dropped may still be writing its last records from its flusher thread,
/// and a new observer on the same file (a restart inside the process) should get the file,
/// not a fallback to memory. Two live users of one file still fail, after the wait.
pub(crate) fn create_when_released(path: &Path) -> Result<Database, DatabaseError> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match Database::create(path) {
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_waits_for_a_file_being_released_and_gives_up_on_one_held() {
        let dir =
            std::env::temp_dir().join(format!("tower-observe-redb-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("held.redb");
        let held = Database::create(&path).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let started = Instant::now();
        let reopened = create_when_released(&path).expect("the file once released");
        assert!(started.elapsed() >= Duration::from_millis(150));
        releaser.join().unwrap();
        // Held for good: an error after the wait, not a hang.
        let started = Instant::now();
        assert!(matches!(
            create_when_released(&path),
            Err(DatabaseError::DatabaseAlreadyOpen)
        ));
        assert!(started.elapsed() >= RELEASE_WAIT);
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Child processes (servers) that can never outlive the test process.
//!
//! Each server runs under a small `/bin/sh` watchdog that leads its own
//! process group. The watchdog's stdin is a pipe whose only write end is held
//! by the test process (Rust opens pipes close-on-exec, so no other child
//! inherits it). When the test process exits — normally, by panic, or by
//! SIGKILL — or when the [`GuardedChild`] is dropped, the pipe closes, and the
//! watchdog stops the server (SIGTERM, SIGKILL after 20 s), SIGTERMs and then
//! SIGKILLs the whole process group (gunicorn/uvicorn workers, huey
//! consumers, ...), optionally removes a scratch directory, and exits.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `sh -c WATCHDOG sh PROGRAM ARGS...`. Env `MLROLLOUT_WATCHDOG_STATUS`:
/// file that receives the server's exit status as soon as it exits (the
/// watchdog itself lives on until the owner is gone), and whose `.pid`
/// sibling receives the server's process id when it starts;
/// `MLROLLOUT_WATCHDOG_RM`: directory to delete once the owner is gone.
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$@" 3<&- &
srv=$!
printf '%s\n' "$srv" >"$MLROLLOUT_WATCHDOG_STATUS.pid"
trap '' TERM HUP INT
(
  read -r _ <&3
  kill -TERM "$srv" 2>/dev/null
  i=0
  while kill -0 "$srv" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.2; i=$((i+1)); done
  kill -KILL "$srv" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$srv"
status=$?
echo "[mlrollout-watchdog] pid $srv exited with status $status" >&2
printf '%s\n' "$status" >"$MLROLLOUT_WATCHDOG_STATUS"
kill -TERM -$$ 2>/dev/null
wait "$watcher"
if [ -n "${MLROLLOUT_WATCHDOG_RM:-}" ]; then rm -rf -- "$MLROLLOUT_WATCHDOG_RM"; fi
kill -KILL -$$
"#;

/// A server process bound to the lifetime of this handle and of the test
/// process (whichever ends first).
pub struct GuardedChild {
    child: Child,
    owner: Option<ChildStdin>,
    log: PathBuf,
    status_file: PathBuf,
}

impl GuardedChild {
    /// Spawns `cmd` (program, args, env changes and cwd are taken from it)
    /// under the watchdog, with stdout and stderr appended to `log`. If
    /// `remove_on_exit` is given, the watchdog deletes that directory after
    /// the server has stopped, unless `MLROLLOUT_KEEP_TEST_DIRS` is set.
    pub fn spawn(
        cmd: &Command,
        log: &Path,
        remove_on_exit: Option<&Path>,
    ) -> std::io::Result<Self> {
        let status_file = PathBuf::from(format!("{}.exit-status", log.display()));
        let _ = std::fs::remove_file(&status_file);
        let _ = std::fs::remove_file(pid_file(&status_file));
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(WATCHDOG)
            .arg("mlrollout-watchdog")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => sh.env(key, v),
                None => sh.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            sh.current_dir(dir);
        }
        sh.env("MLROLLOUT_WATCHDOG_STATUS", &status_file);
        sh.env_remove("MLROLLOUT_WATCHDOG_RM");
        if let Some(dir) = remove_on_exit
            && std::env::var_os("MLROLLOUT_KEEP_TEST_DIRS").is_none()
        {
            sh.env("MLROLLOUT_WATCHDOG_RM", dir);
        }
        let mut child = sh.spawn()?;
        let owner = child.stdin.take();
        Ok(Self {
            child,
            owner,
            log: log.to_path_buf(),
            status_file,
        })
    }

    /// Process id of the watchdog, which is also the process-group id.
    pub fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` once the server process has exited (for
    /// whatever reason). Note that the watchdog keeps the process group and
    /// scratch dir alive until the handle is dropped or the test exits.
    pub fn try_exited(&mut self) -> Option<String> {
        if let Ok(code) = std::fs::read_to_string(&self.status_file)
            && !code.trim().is_empty()
        {
            return Some(format!("exit status {}", code.trim()));
        }
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|st: ExitStatus| format!("watchdog ended: {st}"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Process id of the server (the watchdog's child running the program); waits up to 10 s
    /// for the watchdog to have started it.
    pub fn server_pid(&self) -> u32 {
        let file = pid_file(&self.status_file);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(pid) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the watchdog of {} never started its server",
                self.log.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// `kill -KILL` of the server and every process it started (workers, a server it
    /// runs as a child), all at once, as a machine losing them would; waits until they are
    /// gone. The watchdog stays (it removes the scratch dir when the handle is dropped); the
    /// handle then reports the server exited ([`GuardedChild::try_exited`]).
    pub fn kill_tree(&mut self) {
        let mut pids = vec![self.server_pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        let status = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status()
            .expect("kill runs");
        // A process that ended between the listing and the kill makes `kill` fail: the others
        // got the signal.
        let _ = status;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pids.iter().any(|pid| alive(*pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{pids:?} survived SIGKILL"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        while self.try_exited().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the watchdog of {} did not see its server end",
                self.log.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The last `max_lines` lines of the server log.
    pub fn log_tail(&self, max_lines: usize) -> String {
        log_tail(&self.log, max_lines)
    }

    /// Stops the server and its whole process group, and waits for it.
    pub fn stop(&mut self) {
        drop(self.owner.take());
        let _ = self.child.wait();
    }
}

impl Drop for GuardedChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pid_file(status_file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pid", status_file.display()))
}

/// The processes `pid` started (every thread's children).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// The last `max_lines` lines (at most the last 64 KiB) of a log file.
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("<no log at {}>", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// Base directory for test scratch dirs: cargo's `target/tmp` for
/// integration tests, else `<manifest>/target/tmp`.
pub fn tmp_base() -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("tmp"),
    }
}

/// Creates a fresh, uniquely named directory under [`tmp_base`].
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = tmp_base().join(format!("{prefix}-{}-{n}-{nanos:09}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Finds `name` on `PATH`.
pub fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let name = name.as_ref();
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

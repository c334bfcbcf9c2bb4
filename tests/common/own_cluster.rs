//! A control plane of a test's own, for faults that must not disturb the shared one (an API
//! server and etcd killed and started again): `tests/harness/cluster.sh up --dir` in a scratch
//! folder, `restart`, and `down` plus removal when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::scratch_dir;

/// A control plane of the test's own (`cluster.sh up --dir`), stopped and removed when dropped,
/// also when the test fails; `--watch-pid` stops it if the test process is killed.
pub struct OwnCluster {
    pub dir: PathBuf,
}

fn cluster_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/cluster.sh")
}

impl OwnCluster {
    pub fn up(prefix: &str) -> OwnCluster {
        let own = OwnCluster {
            dir: scratch_dir(prefix),
        };
        let status = Command::new("bash")
            .arg(cluster_sh())
            .args(["up", "--control-plane-only", "--dir"])
            .arg(&own.dir)
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("bash runs cluster.sh");
        assert!(
            status.success(),
            "cluster.sh up --dir {}",
            own.dir.display()
        );
        own
    }

    pub fn pid(&self, component: &str) -> String {
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap();
        pids.lines()
            .find_map(|l| l.strip_prefix(&format!("{component} ")))
            .unwrap_or_else(|| panic!("no {component} in {}/pids", self.dir.display()))
            .to_string()
    }

    /// SIGKILL to `component`; waits until it is gone.
    pub fn kill(&self, component: &str) {
        let pid = self.pid(component);
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill -KILL {component} ({pid})");
        let stat = format!("/proc/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(
                Instant::now() < deadline,
                "{component} ({pid}) survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `cluster.sh restart`: etcd and kube-apiserver again, same flags, certificates and data.
    pub fn restart(&self) {
        let status = Command::new("bash")
            .arg(cluster_sh())
            .args(["restart", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cluster.sh restart --dir {}",
            self.dir.display()
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(cluster_sh())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! Hard limits and CPU throttling through cgroups, where the node may create them: cgroup v2
//! (`memory.max`, `cpu.max`) or v1 (`memory.limit_in_bytes`, `cpu.cfs_quota_us`). Hosts differ
//! (some containers offer v1 only, some nothing writable), so this is detected at start and
//! the supervisor falls back to measuring and signalling when it is absent.

use std::io;
use std::path::{Path, PathBuf};

use mindmesh_core::config::CgroupMode;

/// CFS period used for CPU quotas: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where this node creates one cgroup per persona.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: CgroupVersion,
    memory_base: PathBuf,
    cpu_base: PathBuf,
}

/// One persona's cgroup (for v1, a directory in each of the memory and cpu hierarchies).
#[derive(Debug, Clone)]
pub struct PersonaCgroup {
    version: CgroupVersion,
    memory_dir: PathBuf,
    cpu_dir: PathBuf,
}

impl Cgroups {
    /// Find a writable cgroup hierarchy with memory and cpu controllers, or `None`.
    pub fn detect(mode: CgroupMode, instance: &str) -> Option<Cgroups> {
        if mode == CgroupMode::Off {
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let leaf = format!("mindmesh-{instance}");
        match detect_v2(&mountinfo, &own, &leaf).or_else(|| detect_v1(&mountinfo, &own, &leaf)) {
            Some(c) => {
                tracing::info!(version = ?c.version, memory = %c.memory_base.display(), "cgroups in use for limits");
                Some(c)
            }
            None => {
                tracing::info!("no writable cgroup hierarchy: limits are measured, throttling uses SIGSTOP/SIGCONT");
                None
            }
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn create(&self, persona: &str) -> io::Result<PersonaCgroup> {
        let memory_dir = self.memory_base.join(persona);
        let cpu_dir = self.cpu_base.join(persona);
        std::fs::create_dir_all(&memory_dir)?;
        if cpu_dir != memory_dir {
            std::fs::create_dir_all(&cpu_dir)?;
        }
        Ok(PersonaCgroup { version: self.version, memory_dir, cpu_dir })
    }

    /// Remove the node's (empty) base directories at shutdown.
    pub fn remove_base(&self) {
        let _ = std::fs::remove_dir(&self.memory_base);
        let _ = std::fs::remove_dir(&self.cpu_base);
    }
}

fn detect_v2(mountinfo: &str, own: &str, leaf: &str) -> Option<Cgroups> {
    let mount = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let parent = mount.join(rel.trim_start_matches('/'));
    let controllers = std::fs::read_to_string(parent.join("cgroup.controllers")).ok()?;
    if !(controllers.split_whitespace().any(|c| c == "memory") && controllers.split_whitespace().any(|c| c == "cpu")) {
        return None;
    }
    // "No internal processes": a cgroup that delegates controllers may hold no process, so
    // the node moves itself into a leaf first, then enables memory and cpu for its siblings.
    let base = parent.join(leaf);
    let node_leaf = parent.join(format!("{leaf}-node"));
    std::fs::create_dir_all(&node_leaf).ok()?;
    std::fs::write(node_leaf.join("cgroup.procs"), "0").ok()?;
    std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu").ok()?;
    std::fs::create_dir_all(&base).ok()?;
    std::fs::write(base.join("cgroup.subtree_control"), "+memory +cpu").ok()?;
    Some(Cgroups { version: CgroupVersion::V2, memory_base: base.clone(), cpu_base: base })
}

fn detect_v1(mountinfo: &str, own: &str, leaf: &str) -> Option<Cgroups> {
    let base_for = |controller: &str| -> Option<PathBuf> {
        let mount = mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let (fstype, _src, opts) = (post.next()?, post.next()?, post.next()?);
            if fstype != "cgroup" || !opts.split(',').any(|o| o == controller) {
                return None;
            }
            pre.split_whitespace().nth(4).map(PathBuf::from)
        })?;
        let rel = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls.split(',').any(|c| c == controller).then_some(path)
        })?;
        let base = mount.join(rel.trim_start_matches('/')).join(leaf);
        std::fs::create_dir_all(&base).ok()?;
        // a probe group proves we may create and configure groups here
        let probe = base.join(".probe");
        std::fs::create_dir_all(&probe).ok()?;
        let ok = probe.join("cgroup.procs").exists();
        let _ = std::fs::remove_dir(&probe);
        ok.then_some(base)
    };
    let memory_base = base_for("memory")?;
    let cpu_base = base_for("cpu")?;
    Some(Cgroups { version: CgroupVersion::V1, memory_base, cpu_base })
}

impl PersonaCgroup {
    /// The `cgroup.procs` files to write a process into for the controllers it needs. Only
    /// what is needed: each move costs an RCU grace period in cgroup v1 and holds up forks.
    pub fn procs_files(&self, memory: bool, cpu: bool) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if memory {
            v.push(self.memory_dir.join("cgroup.procs"));
        }
        if cpu && !(memory && self.cpu_dir == self.memory_dir) {
            v.push(self.cpu_dir.join("cgroup.procs"));
        }
        v
    }

    pub fn path(&self) -> &Path {
        &self.memory_dir
    }

    pub fn set_memory_max(&self, bytes: Option<u64>) -> io::Result<()> {
        match self.version {
            CgroupVersion::V2 => std::fs::write(
                self.memory_dir.join("memory.max"),
                bytes.map_or_else(|| "max".to_owned(), |b| b.to_string()),
            ),
            CgroupVersion::V1 => std::fs::write(
                self.memory_dir.join("memory.limit_in_bytes"),
                bytes.map_or_else(|| "-1".to_owned(), |b| b.to_string()),
            ),
        }
    }

    /// Cap CPU at `percent` of one core (None: no cap).
    pub fn set_cpu_max(&self, percent: Option<f64>) -> io::Result<()> {
        let quota_us = percent.map(|p| ((p / 100.0) * CPU_PERIOD_US as f64).round().max(1000.0) as u64);
        match self.version {
            CgroupVersion::V2 => std::fs::write(
                self.cpu_dir.join("cpu.max"),
                match quota_us {
                    Some(q) => format!("{q} {CPU_PERIOD_US}"),
                    None => format!("max {CPU_PERIOD_US}"),
                },
            ),
            CgroupVersion::V1 => {
                std::fs::write(self.cpu_dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                std::fs::write(
                    self.cpu_dir.join("cpu.cfs_quota_us"),
                    quota_us.map_or_else(|| "-1".to_owned(), |q| q.to_string()),
                )
            }
        }
    }

    /// How many times the kernel's OOM killer has fired in this group.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(self.memory_dir.join(file))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok())))
            .unwrap_or(0)
    }

    /// Every process in the group (also those that left the process group).
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.memory_dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL whatever is left in the group, e.g. a grandchild that called `setsid`.
    pub fn kill_all(&self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Remove the group once empty (the kernel refuses while processes remain).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.memory_dir);
        if self.cpu_dir != self.memory_dir {
            let _ = std::fs::remove_dir(&self.cpu_dir);
        }
    }
}

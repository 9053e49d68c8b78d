"""The peer: RELION as its users run it, checked before any figure of it counts.

Every benchmark that runs relion_refine builds its command here, so that all of them get the same
set-up and say which one they had:
- which RELION: one built by `make peer` under .peer/ (RELION 5.0.1, or 4.0: their defaults right
  for our references) when present, else the one on PATH (Debian's 3.1.3); `RELION_BIN` picks a
  folder; RELION 5's --blush runs our `relion_python_blush` (Relion.blush_env), the same denoiser;
- its version and the check `../shared/peer/relion_ctf_check.sh` (RELION's own noise-free CTF
  projections of a map, refined for one iteration from that map: the median pose error must be
  under 10 deg), run once per set-up and remembered in results/peer_check.json; a set-up that
  fails it raises instead of producing figures;
- the job as RELION's GUI writes it (3D auto-refine: HEALPix order 2, local searches from order 4,
  offsets 5/1 px, oversampling 1, pad 2, --norm --scale, solvent flattening, zero mask, halves
  joined below 40 A) plus what a correct set-up of our files needs: `--ctf_corrected_ref` (our
  references are made from structures or CTF-corrected maps; RELION 3.1 leaves it off, and its
  first iteration then compares CTF-modulated images with CTF-free projections and assigns random
  poses) and `--firstiter_cc` when the reference is not on the particles' grey scale;
- each run pinned to its cores (`taskset`), its thread count stated.

    .venv/bin/python benchmarks/peer.py     # prints the set-up and runs (or recalls) its check
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHECK_SCRIPT = REPO.parent / "shared" / "peer" / "relion_ctf_check.sh"
CHECK_FILE = HERE / "results" / "peer_check.json"
CHECK_LIMIT_DEG = 10.0
# the classification peers' translations (2D and 3D): 5 px in 2 px steps, oversampled once (to 1 px)
CLASSIFY_OFFSETS = ["--offset_range", "5", "--offset_step", "2", "--oversampling", "1"]


@dataclass(frozen=True)
class Relion:
    bin: Path
    version: str

    def program(self, name: str) -> str:
        return str(self.bin / name)

    @property
    def has_blush(self) -> bool:
        """RELION 5 has --blush (refine, Class3D), run as `relion_python_blush` from PATH."""
        return int(self.version.split(".")[0]) >= 5 if self.version[:1].isdigit() else False

    def blush_env(self) -> dict[str, str]:
        """The environment in which RELION 5's --blush runs our relion_python_blush (this venv's
        console script: the denoiser we ship), not a conda environment's."""
        return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def record(self, work: Path, cores: str) -> dict:
        """What a results file keeps of the peer: version, folder, the flags the set-up adds, its
        CTF check, and the cores it ran on (one thread each)."""
        return {
            "relion": self.version,
            "bin": str(self.bin),
            "flags": self.corrected_ref_flag,
            "ctf_check_median_error_deg": ctf_check(self, work),
            "cores": cores,
            "threads": 1,
        }

    @property
    def corrected_ref_flag(self) -> list[str]:
        """RELION 4.0 turned --ctf_corrected_ref on by default (and dropped the flag for
        --ctf_uncorrected_ref); 3.1 needs it said."""
        return ["--ctf_corrected_ref"] if self.version.startswith("3.") else []


def find_relion() -> Relion | None:
    """The peer's RELION, or None where none is installed."""
    candidates = [Path(os.environ["RELION_BIN"])] if os.environ.get("RELION_BIN") else []
    for checkout in dict.fromkeys([REPO, main_checkout()]):  # a git worktree: the main checkout's peer
        candidates += sorted((checkout / ".peer").glob("relion-*/bin"), reverse=True)
    on_path = shutil.which("relion_refine")
    candidates += [Path(on_path).parent] if on_path else []
    for folder in candidates:
        if (folder / "relion_refine").exists():
            return Relion(folder, version_of(folder))
    return None


def main_checkout() -> Path:
    """The checkout `make peer` ran in: this one, or the main one where this is a git worktree."""
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return Path(common.stdout.strip()).parent if common.returncode == 0 else REPO


def version_of(folder: Path) -> str:
    run = subprocess.run([str(folder / "relion_refine"), "--version"], capture_output=True, text=True)
    found = re.search(r"RELION version:\s*([0-9][^\s]*)", run.stdout + run.stderr)
    return found.group(1) if found else "unknown"


def ctf_check(relion: Relion, work: Path, flags: list[str] | None = None) -> float:
    """Median pose error (deg) of the set-up's first iteration on its own CTF projections: the
    check script on 300 particles of adk_closed at 2 A/px, with `flags` (default: the set-up's).
    Remembered per RELION folder, version and flags."""
    flags = relion.corrected_ref_flag if flags is None else flags
    checks = json.loads(CHECK_FILE.read_text()) if CHECK_FILE.exists() else {}
    key = f"{relion.bin} {relion.version} {' '.join(flags)}".strip()
    if key not in checks:
        from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

        data = work / "peer_check"
        if not (data / "truth.star").exists():
            simulate_from_model(
                REPO / "blush_scipion" / "data" / "adk_closed.pdb.gz",
                SimulationSettings(n_particles=300, box=64, pixel_size=2.0, snr=1.0, seed=11),
                data,
            )
        run = subprocess.run(
            [
                "bash",
                str(CHECK_SCRIPT),
                str(relion.bin),
                str(data / "truth.mrc"),
                str(data / "truth.star"),
                str(data / f"check_{relion.version}_{len(flags)}"),
                *flags,
            ],
            capture_output=True,
            text=True,
        )
        found = re.search(r"after one iteration: ([0-9.]+) deg over (\d+) images", run.stdout)
        if not found:
            raise RuntimeError(f"{CHECK_SCRIPT}: no result from {relion.bin}: {run.stderr.strip()[-300:]}")
        checks[key] = {
            "relion": asdict(relion) | {"bin": str(relion.bin)},
            "flags": flags,
            "median_error_deg": float(found.group(1)),
            "images": int(found.group(2)),
            "command": f"bash {CHECK_SCRIPT.name} {relion.bin} truth.mrc truth.star DIR " + " ".join(flags),
        }
        CHECK_FILE.parent.mkdir(exist_ok=True)
        CHECK_FILE.write_text(json.dumps(checks, indent=2) + "\n")
    return checks[key]["median_error_deg"]


def checked_relion(work: Path) -> Relion:
    """The peer, after its set-up passed the CTF check; raises where none is installed or it fails."""
    relion = find_relion()
    if relion is None:
        raise RuntimeError("no RELION: apt-get install relion, or make peer")
    error = ctf_check(relion, work)
    if error >= CHECK_LIMIT_DEG:
        raise RuntimeError(
            f"RELION {relion.version} in {relion.bin} fails the CTF check ({error:.1f} deg median "
            f"error on its own projections): its figures would measure a broken set-up"
        )
    return relion


def pinned(cmd: list[str], cores: str | None) -> list[str]:
    """`cmd` run on the given cores (taskset list such as "0" or "0-1"), where taskset exists."""
    return ["taskset", "-c", cores, *cmd] if cores and shutil.which("taskset") else cmd


def unpinned(cmd: list[str]) -> list[str]:
    """`cmd` without the cores `pinned` gave it: the same run whichever core it continues on."""
    return cmd[3:] if cmd[:2] == ["taskset", "-c"] else cmd


def cores_of(cores: str) -> list[int]:
    """The cores of a taskset list such as "0", "0-3" or "0,2"."""
    out: list[int] = []
    for part in cores.split(","):
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out


def thread_env(cores: str) -> dict[str, str]:
    """The environment of a program pinned to `cores`: one thread per core."""
    return dict(os.environ, OMP_NUM_THREADS=str(len(cores_of(cores))))


def mpi_program(relion: Relion, ranks: int, name: str = "relion_refine_mpi") -> list[str]:
    """RELION's program `name` on `ranks` MPI processes (as root too, more ranks than cores allowed)."""
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(ranks), relion.program(name)]


def auto_refine(
    relion: Relion,
    *,
    particles: str,
    ref: str,
    out: str,
    diameter: float,
    ini_high: float = 40.0,
    ranks: int = 3,
    threads: int = 1,
    greyscale: bool = False,
    oversampling: int = 1,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """relion_refine_mpi --auto_refine as the GUI's 3D auto-refine job writes it, with the flags a
    structure-made reference needs. ranks: MPI processes (the leader plus two half-set workers);
    greyscale: the reference is on the particles' absolute grey scale (else --firstiter_cc)."""
    cmd = [
        *mpi_program(relion, ranks),
        "--o",
        f"{out}/run",
        "--auto_refine",
        "--split_random_halves",
        "--i",
        particles,
        "--ref",
        ref,
        "--ini_high",
        f"{ini_high:g}",
        "--ctf",
        *relion.corrected_ref_flag,
        "--particle_diameter",
        f"{diameter:.1f}",
        "--flatten_solvent",
        "--zero_mask",
        "--oversampling",
        str(oversampling),
        "--healpix_order",
        "2",
        "--auto_local_healpix_order",
        "4",
        "--offset_range",
        "5",
        "--offset_step",
        "1",
        "--sym",
        "C1",
        "--low_resol_join_halves",
        "40",
        "--norm",
        "--scale",
        "--j",
        str(threads),
        "--pool",
        "3",
        "--pad",
        "2",
        "--dont_combine_weights_via_disc",
        "--random_seed",
        "1",
    ]
    return cmd + ([] if greyscale else ["--firstiter_cc"]) + list(extra)


def main():
    relion = find_relion()
    if relion is None:
        sys.exit("no RELION found: apt-get install relion, or make peer")
    work = HERE / "work"
    print(f"RELION {relion.version} in {relion.bin}; flags {relion.corrected_ref_flag or 'none needed'}")
    print(
        f"CTF check: median error {ctf_check(relion, work):.1f} deg (a working set-up: < {CHECK_LIMIT_DEG:g})"
    )
    if relion.corrected_ref_flag:  # what the set-up gives without the flag its version needs
        print(f"without {relion.corrected_ref_flag[0]}: {ctf_check(relion, work, flags=[]):.1f} deg")


if __name__ == "__main__":
    main()

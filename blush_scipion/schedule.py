"""Schedule every protocol of a project once: `python -m blush_scipion.schedule PROJECT`.

pyworkflow's own `python -m pyworkflow.project.scripts.schedule` (3.11.7) walks the sub-workflow of
each root protocol and schedules every protocol it meets, so a protocol fed by two roots (3D
auto-refine takes the imported particles and the imported reference map, two import protocols) is
scheduled, and later launched, twice: two runs of it work in the same run folder at once. This
script does what that one does (the same runs, the same initial waits, level x 30 s, the same
--ignore option), scheduling each protocol once at its deepest level. Scheduled protocols then wait
as Scipion's do: while their `_validate` reports errors (inputs not ready) or their prerequisites
("wait for") have not finished.
"""

import os
import sys


def schedule_project(name: str, ignore=()) -> list:
    """Schedule the saved protocols of project `name` (except classes or labels in `ignore`);
    returns the ids scheduled, in order."""
    import pyworkflow as pw
    from pyworkflow.project import Manager, Project
    from pyworkflow.protocol import INITIAL_SLEEP_TIME

    manager = Manager()
    if not manager.hasProject(name):
        raise SystemExit(f"There is no project named {name!r}.")
    project = Project(pw.Config.getDomain(), os.path.realpath(manager.getProjectPath(name)))
    project.load()
    deepest = {}  # protocol id -> (protocol, level)
    for root in project.getRunsGraph().getRootNodes():
        for child in root.getChildren():
            workflow, _ = project._getSubworkflow(child.run)
            for prot, level in workflow.values():
                known = deepest.get(prot.getObjId())
                deepest[prot.getObjId()] = (prot, max(level, known[1]) if known else level)
    scheduled = []
    for prot, level in sorted(deepest.values(), key=lambda item: (item[1], item[0].getObjId())):
        if prot.forceSchedule.get():
            print(f"Not scheduling {prot.getObjLabel()!r}: it is marked 'force schedule'.")
        elif prot.getClassName() in ignore or prot.getObjLabel() in ignore:
            print(f"Not scheduling {prot.getClassName()} {prot.getObjLabel()!r} (--ignore).")
        elif not prot.isSaved():
            print(f"Not scheduling {prot.getObjLabel()!r}: it is {prot.getStatus()}.")
        else:
            project.scheduleProtocol(prot, initialSleepTime=level * INITIAL_SLEEP_TIME)
            scheduled.append(prot.getObjId())
    return scheduled


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (len(argv) > 1 and argv[1] != "--ignore"):
        raise SystemExit("usage: python -m blush_scipion.schedule PROJECT [--ignore CLASS_OR_LABEL ...]")
    print("Scheduled:", " ".join(map(str, schedule_project(argv[0], ignore=argv[2:]))))


if __name__ == "__main__":
    main()

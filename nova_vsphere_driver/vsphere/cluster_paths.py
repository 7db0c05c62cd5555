"""Which clusters ``[vsphere] cluster_names`` means: a cluster's name, or its path.

A cluster's name is unique only within its datacenter. An entry of
``cluster_names`` is therefore either

* the cluster's name (``cluster-a``), when one cluster of the vCenter has it;
* the end of its path -- datacenter name, then cluster name, each part
  separated by ``/`` (``dc1/cluster-a``), with as many of the folders that
  hold the datacenter in front as needed (``emea/dc1/cluster-a``);
* or, starting with ``/``, its whole path from the root folder
  (``/emea/dc1/cluster-a``).

Folders between the datacenter and the cluster (the host folder and its
subfolders) are not written. vCenter itself writes a ``/`` inside a name as
``%2f`` (and ``%`` as ``%25``), and so does this option: a ``/`` always
separates parts. A name found in several datacenters is refused, with the
paths that would tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nova_vsphere_driver.vsphere.cluster_state import ClusterRef


class ClusterNameError(ValueError):
    """``cluster_names`` names no cluster, several, or one cluster twice."""


class NoSuchCluster(ClusterNameError):
    """An entry names no cluster of the vCenter."""


def _parts(path: str) -> list[str]:
    return path.split("/")


def matches(ref: ClusterRef, entry: str) -> bool:
    """Whether the ``cluster_names`` entry ``entry`` means the cluster ``ref``."""
    full = _parts(ref.path)
    if entry.startswith("/"):
        return _parts(entry[1:]) == full
    wanted = _parts(entry)
    return len(wanted) <= len(full) and full[len(full) - len(wanted):] == wanted


def select(found: Iterable[ClusterRef], entries: Sequence[str]) -> list[ClusterRef]:
    """The clusters of ``found`` that ``entries`` mean, in their order.

    Raises :class:`ClusterNameError` naming every entry that means no
    cluster (and the clusters there are), means several (and their
    datacenters), or means a cluster another entry means already.
    """
    found = sorted(found, key=lambda r: r.path)
    chosen: list[ClusterRef] = []
    by_moref: dict[str, str] = {}
    missing: list[str] = []
    for entry in entries:
        hits = [ref for ref in found if matches(ref, entry)]
        if not hits:
            missing.append(entry)
            continue
        if len(hits) > 1:
            raise ClusterNameError(
                f"{entry!r} is in {len(hits)} datacenters: "
                f"{', '.join(ref.datacenter_path for ref in hits)}; write the datacenter "
                f"too, e.g. {hits[0].path!r}")
        ref = hits[0]
        if ref.moref in by_moref:
            raise ClusterNameError(f"{by_moref[ref.moref]!r} and {entry!r} are the same "
                                   f"cluster, {ref.path}")
        by_moref[ref.moref] = entry
        chosen.append(ref)
    if missing:
        raise NoSuchCluster(
            f"no cluster {', '.join(repr(m) for m in missing)}; clusters there: "
            f"{', '.join(ref.path for ref in found) or '(none)'}")
    return chosen

"""The DRS runtime: our pure ``drs`` library applied to the clusters of vCenter.

It owns what the library leaves to its caller: in-flight claims per cluster
(concurrent spawns and moves see each other before vCenter does), one pass
lock per cluster (balancing and evacuation never overlap), the conversion of
a cluster's state read from vCenter into the library's ``ClusterSnapshot``,
and running the resulting moves as waves of vMotions.

* :mod:`.controller`: :class:`~.controller.ClusterDrs` (placement, balancing,
  evacuation, max_unit for every managed cluster) and :class:`~.controller.PassSchedule`;
* :mod:`.cluster_snapshot`: ``ClusterState`` -> ``drs.ClusterSnapshot``;
* :mod:`.vmotion_waves`: a plan's waves as concurrent vMotions.

It imports ``drs`` and ``vsphere``; neither of them imports it.
"""

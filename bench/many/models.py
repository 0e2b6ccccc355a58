"""Empty job models: a project of many job models of which one (`bench.NoopJob`) has work."""

from jobs.models import Job


class EmptyJob(Job):
    """A job model nobody enqueues: all it adds is a table a worker might ask for work."""

    class Meta:
        abstract = True

    def perform(self) -> None:
        """Never called: W5 queues no row here."""


class Empty01(EmptyJob):
    pass


class Empty02(EmptyJob):
    pass


class Empty03(EmptyJob):
    pass


class Empty04(EmptyJob):
    pass


class Empty05(EmptyJob):
    pass


class Empty06(EmptyJob):
    pass


class Empty07(EmptyJob):
    pass


class Empty08(EmptyJob):
    pass


class Empty09(EmptyJob):
    pass


class Empty10(EmptyJob):
    pass


class Empty11(EmptyJob):
    pass


class Empty12(EmptyJob):
    pass


class Empty13(EmptyJob):
    pass


class Empty14(EmptyJob):
    pass


class Empty15(EmptyJob):
    pass


class Empty16(EmptyJob):
    pass


class Empty17(EmptyJob):
    pass


class Empty18(EmptyJob):
    pass


class Empty19(EmptyJob):
    pass

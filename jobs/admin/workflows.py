"""Workflows in the admin: a job's parents and children with their states, and batches.

A job's page shows the jobs it waits on and the jobs waiting on it (`jobs.models.dependency`),
each a link with its state, and the batch it belongs to; a batch has a page of its own with
its progress, its members by state, its `on_finish` job and who opened it. Each costs a
bounded number of queries: one for the edges, one per job model they name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.apps import apps
from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from jobs.admin.display import STATE_COLOURS, badge
from jobs.models import Batch, Dependency, Job

# Jobs of each kind (parents, children, members) a page names one by one; it counts the rest.
SHOWN = 25


def workflow_lines(job: Job, site_name: str) -> str:
    """The job's parents, children and batch, as lines of links with state badges; "" when
    it has none (the page then leaves the section out)."""
    label, pk = job._meta.concrete_model._meta.label, str(job.pk)
    edges = list(
        Dependency.objects.using(job._state.db)
        .filter(Q(child_model=label, child_pk=pk) | Q(parent_model=label, parent_pk=pk))
        .order_by("pk")[: 4 * SHOWN]
    )
    own = [edge for edge in edges if edge.batch_id is None]
    parents = [
        (e.parent_model, e.parent_pk) for e in own if (e.child_model, e.child_pk) == (label, pk)
    ]
    children = [
        (e.child_model, e.child_pk) for e in own if (e.parent_model, e.parent_pk) == (label, pk)
    ]
    batches = {e.batch_id for e in edges if e.batch_id is not None}
    lines = []
    if parents:
        lines.append(("waits on", jobs_line(parents, job._state.db, site_name)))
    if children:
        lines.append(("waited on by", jobs_line(children, job._state.db, site_name)))
    for batch in Batch.objects.using(job._state.db).filter(pk__in=batches):
        finishes_it = (batch.on_finish_model, batch.on_finish_pk) == (label, pk)
        role = "runs when it finishes" if finishes_it else "member of"
        lines.append((role, format_html("{} {}", _link(batch, site_name), batch_progress(batch))))
    return format_html_join(
        "", '<div class="job-workflow-line"><strong>{}</strong>: {}</div>', lines
    )


def jobs_line(ends: list[tuple[str, str]], using: str | None, site_name: str) -> str:
    """Links to the jobs `ends` names, each with its state badge; a deleted one says so."""
    shown = ends[:SHOWN]
    found = _rows(shown, using)
    parts = []
    for label, pk in shown:
        job = found.get((label, pk))
        if job is None:
            parts.append(format_html("{}#{} (deleted)", label, pk))
        else:
            state = badge(STATE_COLOURS[job.state], job.state)
            parts.append(format_html("{} {}", _link(job, site_name), state))
    more = format_html(" and {} more", len(ends) - SHOWN) if len(ends) > SHOWN else ""
    return format_html("{}{}", format_html_join(", ", "{}", ((part,) for part in parts)), more)


def batch_progress(batch: Batch) -> str:
    """A progress bar of ended members, and the counts by final state."""
    return format_html(
        '<progress class="job-progress" value="{}" max="{}"></progress>'
        " {} of {} ended: {} succeeded, {} failed, {} cancelled · {}",
        batch.ended,
        batch.total or 1,
        batch.ended,
        batch.total,
        batch.succeeded,
        batch.failed,
        batch.cancelled,
        batch.state,
    )


def _rows(ends: Iterable[tuple[str, str]], using: str | None) -> dict[tuple[str, str], Job]:
    by_model: dict[str, list[str]] = defaultdict(list)
    for label, pk in ends:
        by_model[label].append(pk)
    found = {}
    for label, pks in by_model.items():
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        for job in model._rows(using or "default").filter(pk__in=pks):
            found[(label, str(job.pk))] = job
    return found


def _link(obj: object, site_name: str) -> str:
    meta = obj._meta
    try:
        url = reverse(f"{site_name}:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Batches: read-only pages of progress. A batch changes only as its members end."""

    list_display = ("id", "description", "state_badge", "progress", "created_at", "created_by")
    list_display_links = ("id", "description")
    search_fields = ("description", "created_by")
    readonly_fields = (
        "description",
        "state_badge",
        "progress",
        "members_by_state",
        "on_finish_link",
        "members_list",
        "created_at",
        "created_by",
        "closed_at",
        "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        """Only a finished batch: deleting one still running would leave its `on_finish`
        job waiting for ever."""
        if obj is not None and obj.finished_at is None:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="state")
    def state_badge(self, batch: Batch) -> str:
        colour = {"open": "#6c757d", "running": "#fd7e14", "finished": "#198754"}[batch.state]
        return badge(colour, batch.state)

    @admin.display(description="progress")
    def progress(self, batch: Batch) -> str:
        return batch_progress(batch)

    @admin.display(description="members now")
    def members_by_state(self, batch: Batch) -> str:
        """The members' states as they are now, read from their rows."""
        counts = batch.members_by_state()
        if not counts:
            return "-"
        return format_html_join(
            " ",
            "{} {}",
            (
                (badge(STATE_COLOURS[state], state), count)
                for state, count in sorted(counts.items())
            ),
        )

    @admin.display(description="on finish")
    def on_finish_link(self, batch: Batch) -> str:
        job = batch.on_finish()
        if job is None:
            return "-"
        return format_html(
            "{} {}", _link(job, self.admin_site.name), badge(STATE_COLOURS[job.state], job.state)
        )

    @admin.display(description="members")
    def members_list(self, batch: Batch) -> str:
        ends = list(
            batch.edges.order_by("pk").values_list("parent_model", "parent_pk")[: SHOWN + 1]
        )
        if not ends:
            return "-"
        line = jobs_line(ends[:SHOWN], batch._state.db, self.admin_site.name)
        if batch.total > SHOWN:
            line = format_html("{} (first {} of {})", line, SHOWN, batch.total)
        return line

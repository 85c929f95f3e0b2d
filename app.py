"""Voucher Selection: the Chalice app, its HTTP routes (``chalicelib/api/routes.py``) and event
handlers. The work lives in ``chalicelib``."""

from collections.abc import Callable
from typing import Any

from chalice import Chalice, Rate, Response
from chalice.app import CloudWatchEvent, Request, SQSEvent

from chalicelib import chalice_cli, job_events, logs, reconciler, settings, uploads
from chalicelib import migrate as migrations
from chalicelib.api import edge, routes

chalice_cli.follow_the_rendered_stage()  # `chalice deploy --stage dev` at the root
logs.configure()  # INFO, JSON lines: every function's log (chalicelib/logs.py)
app = Chalice(app_name="voucher-selection")
logs.through_root(app.log)  # Chalice's own lines as JSON too
app.register_blueprint(routes.api)  # every HTTP route: chalicelib/api/routes.py


@app.middleware("all")
def request_id_on_every_line(event: object, get_response: Callable[[object], object]) -> object:
    """Every function, whatever its trigger: its lines carry the invocation's request id."""
    with logs.invocation(getattr(event, "lambda_context", None) or getattr(event, "context", None)):
        return get_response(event)


@app.middleware("http")
def one_error_shape(event: Request, get_response: Callable[[Request], Response]) -> Response:
    return edge.one_error_shape(get_response(event))


# Event sources are part of the package: their settings are read when Chalice packages the app.
# At most UPLOAD_MAX_CONCURRENCY uploads are handled at once: each holds a database connection,
# and a folder of thousands of parts must not open thousands. The queue keeps the rest.
@app.on_sqs_message(
    queue=settings.UPLOAD_QUEUE.read(),
    batch_size=1,
    maximum_concurrency=settings.UPLOAD_MAX_CONCURRENCY.read(),
)
def on_upload(event: SQSEvent) -> None:
    uploads.handle(record.body for record in event)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reconcile(event: CloudWatchEvent) -> None:
    reconciler.handle()


@app.on_cw_event(job_events.pattern(settings.GLUE_JOB_NAME.read()))
def on_job_state(event: CloudWatchEvent) -> None:
    job_events.handle(event.detail)


@app.lambda_function(name="migrate")
def migrate(event: dict[str, Any], context: object) -> dict[str, list[str]]:
    return {"applied": migrations.apply()}

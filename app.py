"""Voucher Selection: the table of routes and event handlers. The work lives in ``chalicelib``."""

import os

from chalice import Chalice

from chalicelib import job_events, uploads
from chalicelib import migrate as migrations
from chalicelib.api import handlers

app = Chalice(app_name="voucher-selection")


@app.route(
    "/voucher",
    methods=["POST"],
    content_types=["*/*"],
    api_key_required=os.environ.get("API_KEY_REQUIRED") == "true",  # prod: set by its stage
)
def voucher():
    return handlers.voucher(app.current_request)


@app.route("/selection_criteria", methods=["GET"])
def selection_criteria():
    return handlers.criteria(app.current_request)


@app.route("/search_voucher", methods=["GET"])
def search_voucher():
    return handlers.search_page(app.current_request)


@app.route("/health", methods=["GET"])
def health():
    return handlers.health(app.current_request)


@app.route("/runs", methods=["GET"])
def runs():
    return handlers.runs(app.current_request)


@app.route("/runs/{run_id}", methods=["GET"])
def run(run_id):
    return handlers.run(app.current_request, run_id)


@app.route("/openapi.json", methods=["GET"])
def openapi():
    return handlers.openapi(app.current_request)


@app.on_sqs_message(queue=os.environ.get("UPLOAD_QUEUE", "voucher-uploads"), batch_size=1)
def on_upload(event):
    uploads.handle(event)


@app.on_cw_event(job_events.pattern(os.environ.get("GLUE_JOB_NAME", "voucher-selection")))
def on_job_state(event):
    job_events.handle(event.detail)


@app.lambda_function(name="migrate")
def migrate(event, context):
    return {"applied": migrations.apply()}

"""Voucher Selection: the table of routes and event handlers. The work lives in ``chalicelib``."""

import os

from chalice import Chalice

from chalicelib import job_events, uploads
from chalicelib import migrate as migrations
from chalicelib.api import edge, handlers

app = Chalice(app_name="voucher-selection")
#: Where a stage asks for the API key (prod), every route with the product's answers or its
#: operational data (buckets, keys, ETags, errors) asks for it; /health then says only "ok".
KEYED = handlers.api_key_required()


@app.route("/voucher", methods=["POST"], content_types=["*/*"], api_key_required=KEYED)
def voucher():
    return handlers.voucher(app.current_request)


@app.route("/vouchers", methods=["POST"], content_types=["*/*"], api_key_required=KEYED)
def vouchers():
    return handlers.vouchers(app.current_request)


@app.route("/selection_criteria", methods=["GET"])
def selection_criteria():
    return handlers.criteria(app.current_request)


@app.route("/search_voucher", methods=["GET"])
def search_voucher():
    return handlers.search_page(app.current_request)


@app.route("/health", methods=["GET"])
def health():
    return handlers.health(app.current_request)


@app.route("/runs", methods=["GET"], api_key_required=KEYED)
def runs():
    return handlers.runs(app.current_request)


@app.route("/runs/{run_id}", methods=["GET"], api_key_required=KEYED)
def run(run_id):
    return handlers.run(app.current_request, run_id)


@app.route("/openapi.json", methods=["GET"])
def openapi():
    return handlers.openapi(app.current_request)


@app.middleware("http")
def one_error_shape(event, get_response):
    return edge.one_error_shape(get_response(event))


@app.on_sqs_message(queue=os.environ.get("UPLOAD_QUEUE", "voucher-uploads"), batch_size=1)
def on_upload(event):
    uploads.handle(event)


@app.on_cw_event(job_events.pattern(os.environ.get("GLUE_JOB_NAME", "voucher-selection")))
def on_job_state(event):
    job_events.handle(event.detail)


@app.lambda_function(name="migrate")
def migrate(event, context):
    return {"applied": migrations.apply()}

"""The OpenAPI 3 description served at ``/openapi.json``."""


def spec(title, version, max_upload_bytes, max_images):
    err = {"description": "error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    b64 = {"type": "string", "format": "byte",
           "description": "base64 of an image file (a data: URL prefix is accepted)"}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"aslnet: {title}", "version": version,
                 "description": "Image classification with a model fine-tuned in aslnet. "
                 f"Bodies up to {max_upload_bytes} bytes; JPEG, PNG, WebP, GIF, BMP or TIFF; "
                 f"at most {max_images} images a request."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one image, or several",
                "parameters": [{"name": "top", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1},
                                "description": "how many classes in `top` (default 5)"}],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "images": {"type": "array", "items": {"type": "string",
                                                              "format": "binary"}}}},
                        "description": "one file in `image`: one prediction; several "
                                       "files (any fields): `predictions`"},
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string",
                                                            "format": "binary"}},
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["image"],
                         "properties": {"image": b64}},
                        {"type": "object", "required": ["images"],
                         "properties": {"images": {"type": "array", "items": b64}}},
                        {"type": "array", "items": b64}]}}}},
                "responses": {
                    "200": {"description": "a prediction, or `predictions` for several images",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/Prediction"},
                                {"type": "object", "properties": {"predictions": {
                                    "type": "array", "items": {
                                        "$ref": "#/components/schemas/Prediction"}}}}]}}}},
                    "400": err, "413": err, "415": err,
                    "429": {"description": "queue full: retry after `Retry-After` seconds",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": err["content"]},
                    "503": err}}},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {
                "description": '{"status": "ok"}'}}}},
            "/ready": {"get": {"summary": "Readiness: the model is loaded and warmed up",
                               "responses": {"200": {"description": "ready"},
                                             "503": {"description": "not yet"}}}},
            "/model": {"get": {"summary": "The model served", "responses": {"200": {
                "description": "name, classes, input size, dtype policy, aslnet version, "
                               "file hash"}}}},
            "/metrics": {"get": {"summary": "Prometheus text format", "responses": {"200": {
                "description": "counters and histograms",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Prediction": {"type": "object", "properties": {
                "class": {"type": "string"}, "index": {"type": "integer"},
                "probability": {"type": "number"},
                "top": {"type": "array", "items": {"type": "object", "properties": {
                    "class": {"type": "string"}, "index": {"type": "integer"},
                    "probability": {"type": "number"}}}},
                "probabilities": {"type": "object",
                                  "additionalProperties": {"type": "number"}}}}}},
    }

"""Tags every response with the release's version, so a load generator can tell which release answered."""

from .version import VERSION


class AppVersionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-App-Version"] = VERSION
        return response

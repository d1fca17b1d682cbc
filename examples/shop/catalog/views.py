"""The shop's pages: an index that reads the catalog, a cheap health check, and a slow page for drain tests."""

import time

from django.http import JsonResponse
from django.shortcuts import render

from shop.version import VERSION

from .models import Product


def index(request):
    # Touches the database on every request, so a schema the running code cannot read shows up as a 500.
    products = list(Product.objects.order_by("id")[:10])
    return render(request, "catalog/index.html", {"version": VERSION, "products": products})


def health(request):
    return JsonResponse({"status": "ok", "version": VERSION})


def slow(request):
    seconds = min(float(request.GET.get("s", "2")), 30.0)
    time.sleep(seconds)
    return JsonResponse({"slept": seconds, "version": VERSION})

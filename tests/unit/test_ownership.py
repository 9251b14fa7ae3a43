"""Another user's object is a 404 for every route and every method, exactly like a missing one.

The table is the URLconf itself (tests/api_routes.py): every /api/v1 route that names an object, with
every method it allows, is asked by user B about user A's object. A new route is in the table the
day it is added; one naming a kind of object that no factory makes fails here until one is written.
"""

from __future__ import annotations

import pytest

from tests.api_routes import UNOWNED, api_routes, make_objects

pytestmark = pytest.mark.django_db

ROUTES = [route for route in api_routes() if route.params]
VALID_BODIES = {
    # Bodies that would be valid for A, so that B's 404 cannot come from validation.
    "/api/v1/jobs/{pk}": {"name": "x", "source": "https://example.com/", "queries": [{"name": "t", "type": "css", "query": "h1"}]},
    "/api/v1/runs/{run_id}/exports": {"format": "csv"},
    "/api/v1/projects/{pk}/deploy": {},
}
CASES = [
    pytest.param(route, method, id=f"{method.upper()} {route.template}")
    for route in ROUTES
    if route.family not in UNOWNED
    for method in (*route.methods, "head")
    if method != "head" or "get" in route.methods
]


@pytest.fixture
def objects(user, items_dir):
    return make_objects(user)


def test_the_table_covers_the_api():
    families = {route.family for route in ROUTES}
    assert {"jobs", "runs", "files", "projects"} <= families
    assert len(CASES) >= 30


@pytest.mark.parametrize("route, method", CASES)
def test_another_users_object_is_404(route, method, objects, api, other_api):
    assert route.family in objects, f"No factory makes objects for {route.template}: add one to tests/api_routes.py"
    url = route.url(objects[route.family])
    body = VALID_BODIES.get(route.template, {})
    call = getattr(other_api, method)
    response = call(url, body, format="json") if method in ("post", "put", "patch") else call(url)
    if route.keyless:
        # Authenticated by the project's webhook secret, not a key: B's key is no signature.
        assert response.status_code == 401, response.content
        return
    if not route.introspected and response.status_code == 405:
        return  # a plain view that does not take this method
    assert response.status_code == 404, (method, url, response.status_code, response.content[:300])
    if method != "head":
        assert response.json()["error"] == "not_found"


def test_the_owner_sees_each_object(objects, api):
    """The ids are right: each family's detail route answers its owner."""
    for url in (
        f"/api/v1/jobs/{objects['jobs']['pk']}",
        f"/api/v1/runs/{objects['runs']['pk']}",
        f"/api/v1/files/{objects['files']['file_id']}/info",
        f"/api/v1/projects/{objects['projects']['pk']}",
        f"/api/v1/projects/{objects['projects']['pk']}/deploys/{objects['projects']['deploy_id']}",
    ):
        assert api.get(url).status_code == 200, url


def test_unowned_families_are_refused_to_users(objects, other_api):
    for route in ROUTES:
        if route.family in UNOWNED:
            response = other_api.get(route.url({name: "1" for name in route.params}))
            assert response.status_code in (403, 404), route.template

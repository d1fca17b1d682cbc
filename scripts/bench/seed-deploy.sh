#!/usr/bin/env bash
# The seed article's deploy, as a plain sequential shell script: the baseline zdd's wall time is compared with.
# New release directory, fresh venv, pip install, collectstatic, migrate, a second gunicorn on the other port,
# curl the health check, rewrite the Nginx upstream, nginx -t, reload, stop the old gunicorn as soon as the new
# version answers, point `current` at the release.
#
# Environment (all required): SRC (the app's source), ROOT (releases/, current, run/ live here), RELEASE (id),
# NEW_PORT, SITE (the Nginx site file to write), NGINX_CTL (nginx with -p/-c, as one string), WHEELS,
# APP_ENV (an env file: SECRET_KEY=..., SQLITE_PATH=... or DATABASE_URL=...), LISTEN_PORT (Nginx's port).
set -euo pipefail

release_dir="$ROOT/releases/$RELEASE"
mkdir -p "$release_dir" "$ROOT/run"
cp -a "$SRC/." "$release_dir/"
cd "$release_dir"

/usr/bin/python3 -m venv venv
venv/bin/pip install --quiet --no-index --find-links "$WHEELS" -r requirements.txt

set -a
# shellcheck disable=SC1090
. "$APP_ENV"
set +a
venv/bin/python manage.py collectstatic --noinput >/dev/null
venv/bin/python manage.py migrate --noinput >/dev/null

venv/bin/gunicorn shop.wsgi:application --bind "127.0.0.1:$NEW_PORT" --workers 4 --timeout 30 \
    --graceful-timeout 30 --no-control-socket --pid "$ROOT/run/$NEW_PORT.pid" --daemon \
    --error-logfile "$release_dir/gunicorn.log"

for _ in $(seq 1 200); do
    if curl -fsS "http://127.0.0.1:$NEW_PORT/health/" >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$NEW_PORT/health/" >/dev/null

cat > "$SITE" <<SITE
upstream zdd_app { server 127.0.0.1:$NEW_PORT; }
server {
    listen 127.0.0.1:$LISTEN_PORT;
    location /static/ { alias $release_dir/staticfiles/; }
    location / {
        proxy_pass http://zdd_app;
        proxy_set_header Host \$host;
    }
}
SITE
$NGINX_CTL -t -q
$NGINX_CTL -s reload

# Stop the old instance as soon as the new version answers through Nginx.
new_version="$(venv/bin/python -c 'import shop.version; print(shop.version.VERSION)')"
for _ in $(seq 1 200); do
    if curl -fsS -D - -o /dev/null "http://127.0.0.1:$LISTEN_PORT/health/" 2>/dev/null | grep -qi "x-app-version: $new_version"; then
        break
    fi
    sleep 0.05
done
for pid_file in "$ROOT"/run/*.pid; do
    if [[ "$pid_file" != "$ROOT/run/$NEW_PORT.pid" ]]; then
        kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
        rm -f "$pid_file"
    fi
done

ln -sfn "$release_dir" "$ROOT/current"

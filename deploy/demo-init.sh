#!/bin/sh
# The compose demo's one-time setup: deploy/docker-compose.yml runs it as root in its `init`
# service, with each volume mounted where the daemons expect it. tests/deploy/compose.rs runs
# the same script without Docker, with ROOT set to a scratch directory standing for the
# containers' /. A second run leaves an existing setup alone.
set -eu
R="${ROOT:-}"
APPROVER_UID=10001   # portcullis-approver in deploy/Dockerfile
GATEWAY_UID=10002    # portcullis-gateway
conf="$R/etc/portcullis/portcullis.toml"
if [ -f "$conf" ]; then
  echo "$conf exists: nothing to do"
  exit 0
fi

# The demo admin's key pair, in a volume of its own that no daemon mounts; take it out with
#   docker compose -f deploy/docker-compose.yml cp init:/admin/demo_ed25519 .
mkdir -p "$R/admin"
[ -f "$R/admin/demo_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C demo -f "$R/admin/demo_ed25519"

# The deployed layout: config in /etc/portcullis, each daemon's data under /var/lib.
portcullis init --dir "$R/etc/portcullis" --data-root "$R/var/lib" \
  --user demo --key "$R/admin/demo_ed25519.pub"

# Containers reach each other by service name: the approver listens on the compose network
# (2223 is published on the host's loopback only), the gateway dials approver:2223, and the
# demo target is the postgres service. Each pattern matches one line of init's config.
sed -i \
  -e 's/^listen = "127\.0\.0\.1:2223"/listen = "0.0.0.0:2223"/' \
  -e 's/^listen = "127\.0\.0\.1:2222"/listen = "0.0.0.0:2222"/' \
  -e 's/^approver = "127\.0\.0\.1:2223"/approver = "approver:2223"/' \
  -e 's/^address = "127\.0\.0\.1:5432"/address = "postgres:5432"/' \
  "$conf"
for want in 'listen = "0.0.0.0:2223"' 'listen = "0.0.0.0:2222"' \
            'approver = "approver:2223"' 'address = "postgres:5432"'; do
  grep -q "^$want" "$conf" || { echo "demo-init: $conf lacks: $want" >&2; exit 1; }
done
portcullis check --config "$conf"

# The sshd target gets the gateway's client public key, and nothing else.
mkdir -p "$R/target-keys"
cp "$R/var/lib/portcullis-gateway/client_key.pub" "$R/target-keys/gateway_client_key.pub"
chmod 755 "$R/target-keys"
chmod 644 "$R/target-keys/gateway_client_key.pub"

# What init printed as `useradd` is the Dockerfile's; the `chown` steps, by uid:
chown -R "$APPROVER_UID:$APPROVER_UID" "$R/var/lib/portcullis-approver"
chmod 700 "$R/var/lib/portcullis-approver"
chown -R "$GATEWAY_UID:$GATEWAY_UID" "$R/var/lib/portcullis-gateway"
chmod 700 "$R/var/lib/portcullis-gateway"
echo "demo ready: see the top of deploy/docker-compose.yml"

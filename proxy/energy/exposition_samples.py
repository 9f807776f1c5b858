# ruff: noqa: E501 - recorded exposition lines are kept whole, as exporters print them
"""Recorded Prometheus exposition texts of the DCGM exporter and Kepler, for replay in tests.

Formats follow the exporters' own sources: dcgm-exporter's etc/default-counters.csv (field names,
types and HELP text; `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` is a counter in mJ) and the label set
it prints (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`,
`DCGM_FI_DRIVER_VERSION`, plus `container`, `namespace`, `pod` on Kubernetes); Kepler 0.7.x's
pkg/metrics (container labels `container_id`, `container_name`, `container_namespace`,
`pod_name`, `mode`; `source` on the per-component families) and Kepler 0.10+'s
docs/user/metrics.md and EP-003 (GPU) for `kepler_container_cpu_joules_total` and
`kepler_container_gpu_joules_total`. Label pairs are in the order each exporter writes them
(client_golang sorts Kepler's). Scrapes are abridged to a few families; the node, GPUs, pods
and counter values are invented, and each series' counter grows between scrapes:

DCGM (mJ), per GPU 0..3, scrape 0 -> 1 -> 2: +6000/+5250/+1800/+1050 J, then
+6600/+5400/+900/+1050 J. GPUs 0 and 1 belong to LLAMA_POD, GPU 2 to MISTRAL_POD, GPU 3 is free.
Kepler 0.7 (J), vllm container of LLAMA_POD: dynamic +6280 then +6950, idle +1120 then +1120.
Kepler 0.11 (J), vllm container (pod_id VLLM_POD_ID): package + dram + both GPUs +11382.75 then
+12143 (the `core` zone, inside `package`, grows by 100 then 105).
"""

NAMESPACE = "inference"
LLAMA_POD = "vllm-llama-70b-6d9f8b7c5-x2kqp"
MISTRAL_POD = "vllm-mistral-7b-7b4c9d6f8-m8wzt"
DCGM_UUIDS = (
    "GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",
    "GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",
    "GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",
    "GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",
)
VLLM_POD_ID = "3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c"

_DCGM_0 = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 398.512
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 351.207
DCGM_FI_DEV_POWER_USAGE{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 118.904
DCGM_FI_DEV_POWER_USAGE{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 69.871
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 48211734125
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 47902215870
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 21377650412
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 9803411256
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 97
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 93
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 41
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 0
"""

_DCGM_1 = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 401.118
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 349.862
DCGM_FI_DEV_POWER_USAGE{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 121.337
DCGM_FI_DEV_POWER_USAGE{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 70.024
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 48217734125
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 47907465870
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 21379450412
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 9804461256
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 98
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 92
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 44
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 0
"""

_DCGM_2 = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 439.76
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 360.415
DCGM_FI_DEV_POWER_USAGE{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 60.182
DCGM_FI_DEV_POWER_USAGE{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 69.913
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 48224334125
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 47912865870
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 21380350412
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 9805511256
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 99
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 95
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 18
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 0
"""

# After a driver reload on the same node: every counter restarted near zero.
DCGM_AFTER_RESET = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 95.331
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 94.87
DCGM_FI_DEV_POWER_USAGE{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 71.002
DCGM_FI_DEV_POWER_USAGE{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 69.95
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1520000
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1480000
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 610000
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 350000
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 0
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 0
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 0
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 0
"""

# An exporter run with a counters CSV that leaves the energy field out.
DCGM_WITHOUT_ENERGY = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 398.512
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 351.207
DCGM_FI_DEV_POWER_USAGE{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 118.904
DCGM_FI_DEV_POWER_USAGE{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 69.871
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f7c2b1e-8d3a-4c6f-9b2e-1a7d3c9e4f60",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 97
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a31e9c44-07b2-4e5d-8f61-c2d9b7e05a13",pci_bus_id="00000000:2A:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-llama-70b-6d9f8b7c5-x2kqp"} 93
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 41
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 0
"""

# GPU 2 time-sliced between two pods: the exporter prints its series once per pod.
DCGM_TIME_SLICED = """\
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="vllm",namespace="inference",pod="vllm-mistral-7b-7b4c9d6f8-m8wzt"} 21377650412
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="2",UUID="GPU-0c8d6e2f-91a4-47b3-b5e8-3f2a6d1c7e94",pci_bus_id="00000000:3A:00.0",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07",container="bge",namespace="inference",pod="embed-bge-m3-5c7d9f6b4-q4rjn"} 21377650412
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="3",UUID="GPU-e7b40f93-2c5d-4a18-96fe-8b1d0c3a5f27",pci_bus_id="00000000:5D:00.0",device="nvidia3",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-07",DCGM_FI_DRIVER_VERSION="550.90.07"} 9803411256
"""

_KEPLER_V07_0 = """\
# HELP kepler_container_joules_total Aggregated value in joules value from
# TYPE kepler_container_joules_total counter
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1613794.75
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 425470.5
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1843.5
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 512.25
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="dynamic",pod_name="coredns-5d78c9869d-7xk2p"} 950.0
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="idle",pod_name="coredns-5d78c9869d-7xk2p"} 300.0
# HELP kepler_container_package_joules_total Aggregated value in package value from intel_rapl
# TYPE kepler_container_package_joules_total counter
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 81234.5
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 20310.0
# HELP kepler_container_dram_joules_total Aggregated value in dram value from intel_rapl
# TYPE kepler_container_dram_joules_total counter
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 9120.25
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 3050.5
# HELP kepler_container_gpu_joules_total Aggregated value in gpu value from nvidia
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 1523440.0
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 402110.0
"""

_KEPLER_V07_1 = """\
# HELP kepler_container_joules_total Aggregated value in joules value from
# TYPE kepler_container_joules_total counter
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1620074.75
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 426590.5
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1846.0
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 512.75
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="dynamic",pod_name="coredns-5d78c9869d-7xk2p"} 951.5
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="idle",pod_name="coredns-5d78c9869d-7xk2p"} 300.5
# HELP kepler_container_package_joules_total Aggregated value in package value from intel_rapl
# TYPE kepler_container_package_joules_total counter
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 81484.5
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 20370.0
# HELP kepler_container_dram_joules_total Aggregated value in dram value from intel_rapl
# TYPE kepler_container_dram_joules_total counter
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 9150.25
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 3060.5
# HELP kepler_container_gpu_joules_total Aggregated value in gpu value from nvidia
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 1529440.0
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 403160.0
"""

_KEPLER_V07_2 = """\
# HELP kepler_container_joules_total Aggregated value in joules value from
# TYPE kepler_container_joules_total counter
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1627024.75
kepler_container_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 427710.5
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 1848.75
kepler_container_joules_total{container_id="2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3e5b7d9f1a3c5e7b9d1f3a",container_name="istio-proxy",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp"} 513.25
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="dynamic",pod_name="coredns-5d78c9869d-7xk2p"} 953.0
kepler_container_joules_total{container_id="7e9a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a",container_name="coredns",container_namespace="kube-system",mode="idle",pod_name="coredns-5d78c9869d-7xk2p"} 301.0
# HELP kepler_container_package_joules_total Aggregated value in package value from intel_rapl
# TYPE kepler_container_package_joules_total counter
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 81794.5
kepler_container_package_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 20430.0
# HELP kepler_container_dram_joules_total Aggregated value in dram value from intel_rapl
# TYPE kepler_container_dram_joules_total counter
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 9190.25
kepler_container_dram_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="intel_rapl"} 3070.5
# HELP kepler_container_gpu_joules_total Aggregated value in gpu value from nvidia
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="dynamic",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 1536040.0
kepler_container_gpu_joules_total{container_id="9b1f3c5e7a2d4f6081c3e5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d5f7e9a1c3e5f7",container_name="vllm",container_namespace="inference",mode="idle",pod_name="vllm-llama-70b-6d9f8b7c5-x2kqp",source="nvidia"} 404210.0
"""

_KEPLER_V011_0 = """\
# HELP kepler_build_info A metric with a constant '1' value labeled with version information
# TYPE kepler_build_info gauge
kepler_build_info{arch="amd64",branch="main",goversion="go1.24.4",revision="a1b2c3d",version="v0.11.0"} 1
# HELP kepler_container_cpu_joules_total Energy consumption of cpu at container level in joules
# TYPE kepler_container_cpu_joules_total counter
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="core"} 4102.25
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="dram"} 640.75
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="package"} 5210.5
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="core"} 70.0
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="dram"} 9.5
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="package"} 88.25
# HELP kepler_container_gpu_joules_total Total energy consumption of container on GPU in joules
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="0",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 184220.0
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="1",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 179880.5
"""

_KEPLER_V011_1 = """\
# HELP kepler_build_info A metric with a constant '1' value labeled with version information
# TYPE kepler_build_info gauge
kepler_build_info{arch="amd64",branch="main",goversion="go1.24.4",revision="a1b2c3d",version="v0.11.0"} 1
# HELP kepler_container_cpu_joules_total Energy consumption of cpu at container level in joules
# TYPE kepler_container_cpu_joules_total counter
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="core"} 4202.25
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="dram"} 653.0
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="package"} 5331.0
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="core"} 70.5
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="dram"} 9.75
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="package"} 88.75
# HELP kepler_container_gpu_joules_total Total energy consumption of container on GPU in joules
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="0",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 190220.0
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="1",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 185130.5
"""

_KEPLER_V011_2 = """\
# HELP kepler_build_info A metric with a constant '1' value labeled with version information
# TYPE kepler_build_info gauge
kepler_build_info{arch="amd64",branch="main",goversion="go1.24.4",revision="a1b2c3d",version="v0.11.0"} 1
# HELP kepler_container_cpu_joules_total Energy consumption of cpu at container level in joules
# TYPE kepler_container_cpu_joules_total counter
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="core"} 4307.25
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="dram"} 666.0
kepler_container_cpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",zone="package"} 5461.0
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="core"} 71.0
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="dram"} 10.0
kepler_container_cpu_joules_total{container_id="e1f3a5c7b9d1e3f5a7c9b1d3e5f7a9c1b3d5e7f9a1c3b5d7e9f1a3c5b7d9e1f3",container_name="node-exporter",node_name="gpu-node-07",pod_id="8c2e4a6b-1d3f-4e5a-9b7c-0d2e4f6a8b1c",runtime="containerd",state="running",zone="package"} 89.5
# HELP kepler_container_gpu_joules_total Total energy consumption of container on GPU in joules
# TYPE kepler_container_gpu_joules_total counter
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="0",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 196820.0
kepler_container_gpu_joules_total{container_id="c4a8e2f6b0d4a8c2e6f0b4d8a2c6e0f4b8d2a6c0e4f8b2d6a0c4e8f2b6d0a4c8",container_name="vllm",gpu="1",node_name="gpu-node-07",pod_id="3f1d2c4b-8a7e-4e59-b0c6-1d2e3f4a5b6c",runtime="containerd",state="running",vendor="nvidia"} 190530.5
"""

# Scrapes 0, 1, 2 of each exporter, in order.
DCGM_SCRAPES = (_DCGM_0, _DCGM_1, _DCGM_2)
KEPLER_V07_SCRAPES = (_KEPLER_V07_0, _KEPLER_V07_1, _KEPLER_V07_2)
KEPLER_V011_SCRAPES = (_KEPLER_V011_0, _KEPLER_V011_1, _KEPLER_V011_2)

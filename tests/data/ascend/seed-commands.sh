# The commands of the seed report (../shared/reference/seed-report-bitcpm4-0.5b-ascend.txt), one per line:
# line continuations joined, the chat request's JSON body put on one line; nothing else changed.
# tests/test_dryrun_ascend.py compares the Ascend profile's dry run with them.
# section 3: weights
modelscope download --model OpenBMB/BitCPM4-0.5B
# section 4.1: server
export ASCEND_RT_VISIBLE_DEVICES=0
vllm serve OpenBMB/BitCPM4-0.5B --trust-remote-code --dtype bfloat16 --max-model-len 32768 --max-num-seqs 16 --port 8000
# section 4.2: smoke chat
curl http://localhost:8000/v1/chat/completions -H "Content-Type: application/json" -d '{"model": "OpenBMB/BitCPM4-0.5B", "messages": [{"role": "user", "content": "say hi"}], "temperature": 0, "max_completion_tokens": 16}'
# section 5.2: latency
vllm bench latency --model OpenBMB/BitCPM4-0.5B --trust-remote-code --dtype bfloat16 --input-len 128 --output-len 128 --batch-size 1
# section 5.3: throughput
vllm bench throughput --model OpenBMB/BitCPM4-0.5B --trust-remote-code --dtype bfloat16 --input-len 128 --output-len 128 --num-prompts 100
# section 5.4: serve
vllm bench serve --model OpenBMB/BitCPM4-0.5B --base-url http://localhost:8000 --dataset-name random --random-input 128 --random-output 128 --num-prompts 100 --request-rate 10

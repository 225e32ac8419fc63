package ratelimit

const cpuThread = 1 // RUSAGE_THREAD: the benchmark's own (locked) thread

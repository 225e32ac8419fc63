// Package gcfloor keeps the heap goal at a floor while the process
// allocates fast for the size of its live heap.
//
// Go collects when the heap reaches its live size times 1 + GOGC/100. A
// pushercm node serving gRPC publishes has a live heap of a few MiB and
// allocates several KiB per call in grpc-go alone, so at default GOGC it
// collects dozens of times a second and spends a seventh of its CPU doing
// so. Raising GOGC for good would cost an idle node the garbage of every
// connection burst (its memory per connection is a figure the project
// keeps low), so the Tuner raises it only while the process is busy:
//
//   - every Config.Interval it reads, from runtime/metrics, the bytes
//     allocated since the last check and the live heap, and works out how
//     many collections a second that allocation would start at the base
//     GOGC (the one the process started with);
//   - past Config.BusyRate for two checks in a row, the floor is put in
//     force: GOGC is set so that the goal is Config.Floor (never below the
//     base), and set again at each check as the live heap changes; once the
//     live heap is past half the floor, the base GOGC already gives a goal
//     above it and nothing changes;
//   - under a third of BusyRate for two checks in a row, the base GOGC is
//     put back and one collection is started at once, so the garbage the
//     floor let pile up is returned without waiting for the next
//     allocation.
//
// The signal does not depend on the floor (allocation rate against live
// heap, not the number of collections), so the tuner does not flap.
// GOGC=off (or 0) turns it off; GOMEMLIMIT still applies on top of the goal it
// sets. The tuner owns GOGC while it runs: one per process.
package gcfloor

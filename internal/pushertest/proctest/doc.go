// Package proctest runs a built pushercm binary for a test, the way the
// end-to-end, browser, deploy, interop and cluster tests need it: the
// process's log (stderr) and stdout are kept, the listeners' addresses are
// read from its "pushercm serving" line, and the process is killed at cleanup
// if the test did not stop it, its log printed when the test failed. Start
// takes a binary, arguments and an environment (usually CleanEnv plus the
// test's own); StartCmd takes a command the test prepared (a chroot); Stop is
// the graceful SIGTERM path.
//
// Guarantees: Start returns only once the process serves (or fails the
// test within 60 s, with the log); no goroutine outlives the test; Exited
// is closed once the process has been waited for, after which Err and
// Cmd.ProcessState may be read.
package proctest

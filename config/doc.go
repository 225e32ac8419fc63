// Package config loads and validates pushercm's settings.
//
// Settings come from four places, later ones winning: built-in defaults
// (Default), a YAML file named by --config or PUSHERCM_CONFIG, environment
// variables (the names of DESIGN.md §2), and
// command-line flags (RegisterFlags). Load guarantees that the returned
// configuration passed Validate: unknown YAML keys, values of the wrong type
// and invalid values all stop start-up with an error naming the key (by its
// YAML path, with a did-you-mean for a near miss), variable or flag, before
// any listener opens. Config.Effective is the configuration to print, with
// secrets redacted (`pushercm config check`). Without --dev, missing
// secrets are errors, and so are the published development secrets
// (ErrDevSecret) and a service-token trust (jwt.service) that user tokens
// could satisfy; with --dev, ApplyDev fills missing secrets with well-known
// development values and reports which.
package config

package webhookin

// Remembered is how many signatures the replay check holds.
func (r *Receiver) Remembered() int {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	return len(r.seen)
}

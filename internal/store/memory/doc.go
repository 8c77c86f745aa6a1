// Package memory is the reference store.Store: records in a map behind a
// sync.RWMutex, copied in and out. Nothing survives the process, so it
// serves tests and ephemeral mode (no data directory); it is also the
// behaviour the other backends are held to by store/storetest.
//
//	st := memory.New()
//	defer st.Close()
//	_ = st.Put(ctx, rec)
//	_ = st.Touch(ctx, rec.ID, time.Now()) // immediate: there is no disk
//	got, err := st.Get(ctx, rec.ID)       // a copy; store.ErrNotFound if absent
package memory

"""storage: buckets and objects on local disk, behind Supabase Storage's API. See docs/storage.md."""

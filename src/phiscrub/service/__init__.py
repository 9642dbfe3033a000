"""`phiscrub serve`: the pipeline behind HTTP (uploads, jobs, bucket events, review queue).

Every path goes through the runner's process_item, the job state and the audit log, as
the command line does; this package only adds the HTTP edges around them.
"""
